"""Pure tensor functions for entropy-based pseudo-labelling (U2PL, Sec. 3.2).

Equation numbers refer to Wang et al., "Semi-Supervised Semantic Segmentation
Using Unreliable Pseudo-Labels", CVPR 2022. Every function computes in
float32 whatever the input dtype, runs on the input's device and performs no
host synchronisation, so it is safe inside an AMP-enabled training step.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ...utils.arg_checks import check_int, check_number


def pixel_entropy(probs: Tensor, dim: int = 1, eps: float = 1e-10) -> Tensor:
    """Per-pixel Shannon entropy of class probabilities (U2PL Eq. 5).

    ``H(p) = -sum_c p(c) log p(c)``, in nats. Probabilities are clamped to
    ``eps`` inside the log only, so a one-hot pixel has entropy exactly 0
    (``0 * log eps == 0``) and a uniform pixel over ``C`` classes has
    entropy ``log C``.

    Args:
        probs: Probabilities, e.g. a softmax output of shape (B, C, H, W).
        dim: The class dimension that is summed over.
        eps: Lower clamp for the argument of the log; must be > 0.

    Returns:
        float32 tensor of ``probs``' shape without ``dim``.
    """
    if not torch.is_floating_point(probs):
        raise ValueError(
            f'probs must be a floating point tensor, got dtype {probs.dtype}')
    probs = probs.float()
    # xlogy fuses the product and the log: ~3x faster on CPU than
    # ``probs * probs.clamp_min(eps).log()``, same values.
    return -torch.xlogy(probs, probs.clamp_min(eps)).sum(dim=dim)


def class_argmax(scores: Tensor, dim: int = 1) -> Tensor:
    """Index of the highest score along the class dimension.

    The same as ``scores.argmax(dim)``, ties included (both return the
    first maximal index), but computed with ``max``: on CPU, torch's
    argmax over a non-last dimension is about 6x slower (30 vs 5 ms for a
    (4, 11, 256, 320) softmax, torch 2.13), and the semi-supervised steps
    take several arg-maxes of every teacher output.

    Args:
        scores: Probabilities or logits, e.g. (B, C, H, W).
        dim: The class dimension.

    Returns:
        int64 tensor of ``scores``' shape without ``dim``.
    """
    return scores.max(dim=dim).indices


def entropy_quantile_threshold(entropy: Tensor, valid_mask: Tensor,
                               alpha: float) -> Tensor:
    """Entropy threshold ``gamma_t`` leaving the top ``alpha`` unreliable.

    U2PL Eq. 6: ``gamma_t`` is the ``(1 - alpha_t)`` quantile of the
    entropies of the valid pixels in the batch, so pixels with
    ``entropy >= gamma_t`` (the highest-entropy ``alpha_t`` fraction) are
    unreliable and ``valid & (entropy < gamma_t)`` are reliable. The
    quantile uses linear interpolation between order statistics, exactly
    like ``numpy.percentile(entropy[valid], 100 * (1 - alpha))`` in the
    reference implementation, but is computed with ``torch.sort`` on the
    tensor's device, so it has no input-size limit (unlike
    ``torch.quantile``) and needs no host sync: the valid count stays a
    tensor and the order statistics are read with ``gather``.

    Special cases:
        * ``alpha == 0``: returns ``+inf``, so every valid pixel is reliable
          (the plain quantile would equal the maximum and, with the strict
          ``<``, wrongly drop the most uncertain pixel).
        * ``alpha == 1``: returns the minimum valid entropy, so nothing is
          reliable.
        * no valid pixel: returns 0; ``valid & (entropy < 0)`` is empty.

    Args:
        entropy: Per-pixel entropy of any shape, e.g. (B, H, W).
        valid_mask: bool tensor of the same shape; False pixels (padding,
            ignored regions) are excluded from the quantile.
        alpha: The unreliable proportion ``alpha_t`` in [0, 1].

    Returns:
        0-dim float32 tensor on ``entropy``'s device.
    """
    if entropy.shape != valid_mask.shape:
        raise ValueError(
            f'entropy and valid_mask must have the same shape, got '
            f'{tuple(entropy.shape)} and {tuple(valid_mask.shape)}')
    if valid_mask.dtype != torch.bool:
        raise ValueError(
            f'valid_mask must be a bool tensor, got dtype {valid_mask.dtype}')
    check_number('alpha', alpha, 0, 1)
    device = entropy.device
    if alpha == 0:
        return torch.full((), math.inf, device=device)
    if entropy.numel() == 0:
        return torch.zeros((), device=device)

    valid = valid_mask.flatten()
    # Invalid pixels are pushed to the end, so the first `num_valid` sorted
    # entries are exactly the valid entropies in ascending order.
    sorted_entropy = torch.where(valid,
                                 entropy.flatten().float(),
                                 math.inf).sort().values
    num_valid = valid.sum()
    last_index = (num_valid - 1).clamp_min(0)
    # numpy's 'linear' method: virtual index q * (n - 1). float64 keeps the
    # index exact beyond 2**24 pixels, where float32 would round it.
    position = (1.0 - alpha) * last_index.double()
    lower_index = position.floor().long()
    upper_index = torch.minimum(lower_index + 1, last_index)
    fraction = (position - lower_index.double()).float()
    lower = sorted_entropy.gather(0, lower_index.view(1))
    upper = sorted_entropy.gather(0, upper_index.view(1))
    threshold = torch.lerp(lower, upper, fraction).squeeze(0)
    # With no valid pixel the gathered values are +inf placeholders.
    return torch.where(num_valid > 0, threshold, torch.zeros_like(threshold))


def dynamic_partition_alpha(alpha_0: float, iteration: int,
                            max_iters: int) -> float:
    """Unreliable proportion at iteration ``t`` (U2PL Eq. 7).

    ``alpha_t = alpha_0 * (1 - t / T)``: as the teacher improves, fewer
    pixels are treated as unreliable. Iterations past ``max_iters`` keep
    ``alpha_t`` at 0 instead of turning it negative.

    Args:
        alpha_0: Initial unreliable proportion in [0, 1] (0.2 in U2PL).
        iteration: Current iteration ``t`` (>= 0).
        max_iters: Total iterations ``T`` (> 0).

    Returns:
        ``alpha_t`` as a Python float in [0, alpha_0].
    """
    check_number('alpha_0', alpha_0, 0, 1)
    check_int('iteration', iteration, minimum=0)
    check_int('max_iters', max_iters, minimum=1)
    progress = min(iteration / max_iters, 1.0)
    return alpha_0 * (1.0 - progress)


def adaptive_unsup_weight(reliable_mask: Tensor, eta: float = 1.0) -> Tensor:
    """Adaptive unsupervised loss weight ``lambda_u`` (U2PL Eq. 8).

    ``lambda_u = eta * |B_u| * H * W / #reliable``, i.e. ``eta`` times the
    inverse fraction of reliable pixels, so that ``lambda_u * L_u``
    (with ``L_u`` from :func:`pseudo_label_cross_entropy`, Eq. 3) is
    ``eta`` times the mean cross-entropy over the reliable pixels.

    Args:
        reliable_mask: bool tensor (B, H, W) of reliable pixels.
        eta: Base loss weight (>= 0).

    Returns:
        0-dim float32 tensor; 0 when no pixel is reliable (never inf/NaN).
    """
    if reliable_mask.dtype != torch.bool:
        raise ValueError('reliable_mask must be a bool tensor, got dtype '
                         f'{reliable_mask.dtype}')
    check_number('eta', eta, low=0)
    num_reliable = reliable_mask.sum()
    # clamp_min keeps the division finite; torch.where then zeroes the
    # empty case without a host-side branch.
    weight = (eta * reliable_mask.numel()) / num_reliable.clamp_min(1).float()
    return torch.where(num_reliable > 0, weight, torch.zeros_like(weight))


def pseudo_label_cross_entropy(logits: Tensor,
                               labels: Tensor,
                               ignore_index: int = 255,
                               class_weight: Optional[Tensor] = None
                               ) -> Tensor:
    """Unsupervised loss ``L_u`` on pseudo-labels (U2PL Eq. 3).

    ``L_u = 1 / (|B_u| H W) * sum_{reliable} CE(logits, label)``: the sum
    runs over pixels whose label is not ``ignore_index`` but the
    normaliser is every pixel, so multiply by :func:`adaptive_unsup_weight`
    (Eq. 8) to get a mean over reliable pixels, or by a constant to get the
    FixMatch-style mean over all pixels.

    Args:
        logits: Student logits (B, C, H, W), already resized to the labels.
        labels: int64 pseudo-labels (B, H, W); ``ignore_index`` marks pixels
            that do not contribute.
        ignore_index: Label value to skip.
        class_weight: Optional (C,) weight of each pseudo-label class, as
            mmseg's ``CrossEntropyLoss(class_weight=...)``: each pixel's
            cross-entropy is multiplied by the weight of its label and the
            sum is divided by the mean weight of the labeled pixels, so that
            times Eq. 8 it is the weighted mean over reliable pixels (the
            supervised loss's normalisation).

    Returns:
        0-dim float32 loss, differentiable w.r.t. ``logits``.
    """
    # Shapes, label dtype and class_weight's size are checked by
    # F.cross_entropy; an empty batch would silently give 0 / 0.
    if labels.numel() == 0:
        raise ValueError('labels is empty; cannot average over 0 pixels')
    summed = F.cross_entropy(
        logits.float(),
        labels,
        weight=None if class_weight is None else class_weight.float(),
        ignore_index=ignore_index,
        reduction='sum')
    if class_weight is not None:
        num_labeled = (labels != ignore_index).sum()
        weight_sum = counted_pixel_weight(labels, ignore_index,
                                          class_weight.float())
        # Rescale to mean weight 1 over the labeled pixels; an all-ignored
        # batch has summed == 0 and stays 0.
        summed = summed * num_labeled / weight_sum.clamp_min(1e-12)
    return summed / labels.numel()


def counted_pixel_weight(label: Tensor,
                         ignore_index: int,
                         class_weight: Optional[Tensor] = None,
                         pixel_weight: Optional[Tensor] = None) -> Tensor:
    """Sum over the pixels not ignored of ``class_weight[label]`` times
    ``pixel_weight`` (each 1 when None): the normaliser of PyTorch's mean
    cross-entropy, restricted to the pixels a sampler keeps (mmseg's OHEM
    gives kept pixels weight 1, the others 0)."""
    valid = label != ignore_index
    counted = valid.float()
    if class_weight is not None:
        safe_label = torch.where(valid, label, torch.zeros_like(label))
        counted = counted * class_weight[safe_label]
    if pixel_weight is not None:
        counted = counted * pixel_weight
    return counted.sum()
