"""Pure tensor functions for U2PL's contrastive loss (Sec. 3.3).

Equation numbers refer to Wang et al., "Semi-Supervised Semantic Segmentation
Using Unreliable Pseudo-Labels", CVPR 2022.

Pixel layout: every ``[C, N_pix]`` mask indexes the pixels of a
``(B, h, w)`` map in row-major order, ``n = (b * h + i) * w + j``, i.e. the
order of ``labels.reshape(-1)`` and of :func:`flatten_pixels`. All masks
compare labels against ``arange(C)`` by broadcasting, so every image keeps
its own labels (no one-hot scatter that could mix images up). Nothing here
synchronises with the host, and the float math runs in float32.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...utils.arg_checks import check_number

# Same floor as F.normalize: a zero vector gets cosine 0 with everything
# instead of NaN.
_NORM_EPS = 1e-12


def flatten_pixels(feats: Tensor) -> Tensor:
    """Reshape a (B, D, h, w) map to (B * h * w, D) in the module's order.

    Args:
        feats: Feature map (B, D, h, w).

    Returns:
        Tensor (N_pix, D); a copy, because the pixels are not contiguous.
    """
    return feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])


def class_rank(probs: Tensor) -> Tensor:
    """Rank ``O_ij(c)`` of every class at every pixel (U2PL Eq. 14-15).

    Rank 0 is the most probable class, rank ``C - 1`` the least probable.
    Ties are broken by class index (stable sort), so the result is
    deterministic.

    Args:
        probs: Class probabilities (B, C, h, w); any scores with the same
            ordering work, e.g. logits.

    Returns:
        int64 tensor (B, C, h, w); ``ranks[b, c, i, j]`` is the position of
        class ``c`` when pixel ``(b, i, j)``'s classes are sorted by
        decreasing probability.
    """
    _check_dims('probs', probs, 4, '(B, C, h, w)')
    order = torch.sort(probs, dim=1, descending=True, stable=True).indices
    positions = torch.arange(
        probs.shape[1], device=probs.device).view(1, -1, 1, 1)
    # order[:, k] is the class at rank k; scattering k into it inverts the
    # permutation without a second sort.
    return torch.empty_like(order).scatter_(1, order,
                                            positions.expand_as(order))


def anchor_mask(labels: Tensor, probs: Tensor, num_classes: int,
                prob_threshold: float, ignore_index: int = 255) -> Tensor:
    """Anchor pixels of every class (U2PL Eq. 10-11).

    ``A_c = {pixel | label == c and p(c) > delta_p}``. ``labels`` holds the
    ground truth for labeled images and the (reliable) pseudo-labels for
    unlabeled ones, so Eq. 10 and Eq. 11 are one comparison. Pixels equal
    to ``ignore_index`` (padding, unreliable) match no class; labels outside
    ``[0, num_classes)`` are likewise never anchors (checking them would
    need a host sync).

    Args:
        labels: int64 labels (B, h, w).
        probs: Teacher probabilities (B, C, h, w) with C == num_classes.
        num_classes: Number of classes C.
        prob_threshold: ``delta_p``; a pixel needs p(c) strictly above it.
        ignore_index: Label value that is never a class.

    Returns:
        bool tensor (C, N_pix).
    """
    _check_labels_and_scores(labels, 'probs', probs, num_classes)
    _check_ignore_index(ignore_index, num_classes)
    classes = torch.arange(num_classes, device=labels.device).view(-1, 1)
    is_class = labels.reshape(1, -1) == classes
    confident = _classes_by_pixels(probs).float() > prob_threshold
    return is_class & confident


def labeled_negative_mask(labels: Tensor, ranks: Tensor, low_rank: int,
                          ignore_index: int = 255) -> Tensor:
    """Negative keys of every class from labeled pixels (U2PL Eq. 14).

    ``n^l_ij(c) = 1[y_ij != c] * 1[0 <= O_ij(c) < r_l]``: pixels of another
    class on which the model still ranks ``c`` among its top ``r_l`` guesses
    (hard negatives). Pixels labeled ``ignore_index`` are never negatives:
    padding is not a class, in particular not class 0.

    Args:
        labels: int64 ground truth (B, h, w).
        ranks: :func:`class_rank` output (B, C, h, w).
        low_rank: ``r_l`` (>= 1).
        ignore_index: Label value of pixels without ground truth.

    Returns:
        bool tensor (C, N_pix).
    """
    num_classes = ranks.shape[1] if ranks.dim() == 4 else -1
    _check_labels_and_scores(labels, 'ranks', ranks, num_classes)
    _check_ignore_index(ignore_index, num_classes)
    classes = torch.arange(num_classes, device=labels.device).view(-1, 1)
    flat_labels = labels.reshape(1, -1)
    other_class = (flat_labels != classes) & (flat_labels != ignore_index)
    return other_class & (_classes_by_pixels(ranks) < low_rank)


def unlabeled_negative_mask(unreliable: Tensor, ranks: Tensor, low_rank: int,
                            high_rank: int) -> Tensor:
    """Negative keys of every class from unlabeled pixels (U2PL Eq. 15).

    ``n^u_ij(c) = 1[H(p_ij) > gamma_t] * 1[r_l <= O_ij(c) < r_h]``: an
    unreliable pixel is a negative for the classes it is confident it does
    not belong to. There is deliberately no condition on the pixel's
    pseudo-label. ``unreliable`` must already be False on padding.

    Args:
        unreliable: bool (B, h, w), entropy above ``gamma_t`` (and valid).
        ranks: :func:`class_rank` output (B, C, h, w).
        low_rank: ``r_l`` (>= 1).
        high_rank: ``r_h`` (> r_l, <= C).

    Returns:
        bool tensor (C, N_pix).
    """
    _check_dims('ranks', ranks, 4, '(B, C, h, w)')
    _check_dims('unreliable', unreliable, 3, '(B, h, w)')
    if unreliable.dtype != torch.bool:
        raise ValueError(
            f'unreliable must be a bool tensor, got dtype {unreliable.dtype}')
    if unreliable.shape != ranks.shape[:1] + ranks.shape[2:]:
        raise ValueError(
            f'unreliable {tuple(unreliable.shape)} and ranks '
            f'{tuple(ranks.shape)} disagree in batch or spatial size')
    flat_ranks = _classes_by_pixels(ranks)
    in_band = (flat_ranks >= low_rank) & (flat_ranks < high_rank)
    return unreliable.reshape(1, -1) & in_band


def class_positive_keys(teacher_feats: Tensor,
                        anchor_mask: Tensor) -> Tuple[Tensor, Tensor]:
    """Positive key of every class: the mean anchor representation (Eq. 12).

    ``z_c^+ = 1 / |A_c| * sum_{z in A_c} z``, averaged over the teacher's
    representations of the class's anchor pixels. One matrix product covers
    all classes.

    Args:
        teacher_feats: Teacher representations (N_pix, D).
        anchor_mask: bool (C, N_pix), e.g. from :func:`anchor_mask`.

    Returns:
        ``(positives, has_pixels)``: float32 (C, D) class means (zero rows
        for classes without anchors) and bool (C,).
    """
    _check_dims('teacher_feats', teacher_feats, 2, '(N_pix, D)')
    _check_dims('anchor_mask', anchor_mask, 2, '(C, N_pix)')
    if anchor_mask.dtype != torch.bool:
        raise ValueError('anchor_mask must be a bool tensor, got dtype '
                         f'{anchor_mask.dtype}')
    if anchor_mask.shape[1] != teacher_feats.shape[0]:
        raise ValueError(
            f'anchor_mask covers {anchor_mask.shape[1]} pixels but '
            f'teacher_feats has {teacher_feats.shape[0]}')
    with _float32_math(teacher_feats):
        feats = teacher_feats.float()
        counts = anchor_mask.sum(dim=1)
        sums = anchor_mask.to(feats.dtype) @ feats
        positives = sums / counts.clamp_min(1).unsqueeze(1).to(feats.dtype)
    return positives, counts > 0


def info_nce(anchors: Tensor, positives: Tensor, negatives: Tensor,
             temperature: float, valid: Tensor) -> Tensor:
    """Pixel-level InfoNCE averaged over anchors and classes (U2PL Eq. 4).

    ``L_c = -1 / (C M) * sum_c sum_i log(e^{<z_ci, z_c+>/tau} /
    (e^{<z_ci, z_c+>/tau} + sum_j e^{<z_ci, z_cij->/tau}))`` with ``<,>``
    the cosine similarity. Each term is computed as
    ``logsumexp([s+, s-_1..N]) - s+`` for numerical stability, and only the
    classes flagged in ``valid`` are averaged (``C`` above is their count).
    Negative cosines are ``<a_hat, n> / max(|n|, eps)``, so the (C, M, N, D)
    negatives are only read, never normalised into a copy.

    Args:
        anchors: (C, M, D) anchor representations (the student's).
        positives: (C, D) one positive key per class.
        negatives: (C, M, N, D) negative keys of every anchor.
        temperature: ``tau`` (> 0).
        valid: bool (C,) classes that contribute.

    Returns:
        0-dim float32 loss; exactly 0 (still attached to the inputs' graph)
        when no class is valid.
    """
    _check_dims('anchors', anchors, 3, '(C, M, D)')
    _check_dims('positives', positives, 2, '(C, D)')
    _check_dims('negatives', negatives, 4, '(C, M, N, D)')
    num_classes, num_anchors, channels = anchors.shape
    if positives.shape != (num_classes, channels):
        raise ValueError(f'positives must have shape {(num_classes, channels)}'
                         f', got {tuple(positives.shape)}')
    if negatives.shape[:2] != (num_classes, num_anchors) \
            or negatives.shape[3] != channels:
        raise ValueError(
            f'negatives must have shape ({num_classes}, {num_anchors}, N, '
            f'{channels}), got {tuple(negatives.shape)}')
    if valid.shape != (num_classes,) or valid.dtype != torch.bool:
        raise ValueError(f'valid must be a bool tensor of shape '
                         f'({num_classes},), got {valid.dtype} '
                         f'{tuple(valid.shape)}')
    check_number('temperature', temperature, low=0, low_open=True)
    with _float32_math(anchors):
        anchors = F.normalize(anchors.float(), dim=-1, eps=_NORM_EPS)
        positives = F.normalize(positives.float(), dim=-1, eps=_NORM_EPS)
        negatives = negatives.float()
        positive_logits = torch.einsum('cmd,cd->cm', anchors, positives)
        negative_norms = negatives.norm(dim=-1).clamp_min(_NORM_EPS)
        negative_logits = torch.einsum('cmd,cmnd->cmn', anchors,
                                       negatives) / negative_norms
        logits = torch.cat(
            [positive_logits.unsqueeze(-1), negative_logits],
            dim=-1) / temperature
        per_anchor = torch.logsumexp(logits, dim=-1) - logits[..., 0]
        per_class = per_anchor.mean(dim=1)
        # Multiplying by the mask (not indexing) keeps the graph and avoids a
        # host sync; cosines are bounded, so invalid rows are finite.
        weights = valid.float()
        return (per_class * weights).sum() / weights.sum().clamp_min(1.0)


def sample_anchor_pixels(anchor_mask: Tensor, num_anchors: int,
                         generator: Optional[torch.Generator] = None
                         ) -> Tensor:
    """Draw ``M`` anchor pixels per class, uniformly with replacement.

    U2PL samples a fixed number of anchors per class from ``A_c`` (Eq. 4
    averages over M anchors). One ``multinomial`` call covers all classes;
    rows without any anchor get uniform placeholder weights so the call is
    well defined, and their indices must be ignored (mask the class out).

    Args:
        anchor_mask: bool (C, N_pix).
        num_anchors: M (>= 1).
        generator: Optional RNG on ``anchor_mask``'s device.

    Returns:
        int64 (C, M) flat pixel indices.
    """
    _check_dims('anchor_mask', anchor_mask, 2, '(C, N_pix)')
    if anchor_mask.dtype != torch.bool:
        raise ValueError('anchor_mask must be a bool tensor, got dtype '
                         f'{anchor_mask.dtype}')
    has_anchor = anchor_mask.any(dim=1, keepdim=True)
    weights = torch.where(has_anchor, anchor_mask.float(),
                          torch.ones((), device=anchor_mask.device))
    return torch.multinomial(
        weights, num_anchors, replacement=True, generator=generator)


def gather_pixels(feats: Tensor, pixel_index: Tensor) -> Tensor:
    """Pick the feature vectors of flat pixel indices from a (B, D, h, w) map.

    Indexes the map in place (no permuted copy of the whole map), so the
    backward pass only touches the picked pixels.

    Args:
        feats: (B, D, h, w).
        pixel_index: int64 indices of any shape S into the
            ``B * h * w`` pixels, in the module's pixel order.

    Returns:
        Tensor of shape S + (D,).
    """
    _check_dims('feats', feats, 4, '(B, D, h, w)')
    pixels_per_image = feats.shape[2] * feats.shape[3]
    per_image = feats.flatten(2)
    # Advanced indices separated by a slice put their dims first: S + (D,).
    return per_image[pixel_index // pixels_per_image, :,
                     pixel_index % pixels_per_image]


def resize_pixel_maps(size: torch.Size, labels: Tensor, probs: Tensor,
                      unreliable: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Bring labels, probabilities and the unreliable mask to ``size``.

    Nearest for labels and masks (a label is never averaged into another
    class), bilinear for probabilities; inputs already at ``size`` are
    returned unchanged (probabilities as float32). Every sample is resized
    on its own, so resizing parts of a batch and concatenating them gives
    the same tensors as resizing the concatenation (callers do that to
    avoid concatenating full-resolution probabilities).
    """
    probs = probs.float()
    if labels.shape[1:] != size:
        # float32 represents every label value exactly (< 2**24).
        labels = F.interpolate(
            labels.unsqueeze(1).float(), size=size,
            mode='nearest').squeeze(1).long()
    if unreliable.shape[1:] != size:
        unreliable = F.interpolate(
            unreliable.unsqueeze(1).float(), size=size,
            mode='nearest').squeeze(1) > 0.5
    if probs.shape[2:] != size:
        probs = F.interpolate(
            probs, size=size, mode='bilinear', align_corners=False)
    return labels, probs, unreliable


def _classes_by_pixels(per_class_map: Tensor) -> Tensor:
    """(B, C, h, w) -> (C, B * h * w) in the module's pixel order."""
    return per_class_map.transpose(0, 1).reshape(per_class_map.shape[1], -1)


def _float32_math(reference: Tensor) -> torch.autocast:
    """Disable autocast so the loss math stays float32 under AMP."""
    return torch.autocast(device_type=reference.device.type, enabled=False)


def _check_dims(name: str, tensor: Tensor, dims: int, layout: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f'{name} must be a Tensor, got {type(tensor)}')
    if tensor.dim() != dims:
        raise ValueError(
            f'{name} must have shape {layout}, got {tuple(tensor.shape)}')


def _check_labels_and_scores(labels: Tensor, scores_name: str, scores: Tensor,
                             num_classes: int) -> None:
    _check_dims('labels', labels, 3, '(B, h, w)')
    _check_dims(scores_name, scores, 4, '(B, C, h, w)')
    if labels.dtype != torch.long:
        raise ValueError(
            f'labels must be an int64 tensor, got dtype {labels.dtype}')
    if scores.shape[1] != num_classes:
        raise ValueError(f'{scores_name} has {scores.shape[1]} classes, '
                         f'expected num_classes={num_classes}')
    if labels.shape != scores.shape[:1] + scores.shape[2:]:
        raise ValueError(
            f'labels {tuple(labels.shape)} and {scores_name} '
            f'{tuple(scores.shape)} disagree in batch or spatial size')


def _check_ignore_index(ignore_index: int, num_classes: int) -> None:
    if 0 <= ignore_index < num_classes:
        raise ValueError(f'ignore_index={ignore_index} collides with a class '
                         f'index in [0, {num_classes})')
