"""Pure tensor functions for RML's prototype-based self-rectification.

Zhang et al., "Robust Mutual Learning for Semi-supervised Semantic
Segmentation", 2021 (arXiv 2106.00609), Sec. 4.2. Each teacher keeps one
prototype (feature centroid) per class in its own decoder feature space and
re-weights its class probabilities by how close a pixel's feature lies to
each prototype. Equation numbers are the paper's (Eq. 6: the rectified
probability, Eq. 9: the class-wise confidence, Eq. 10-11: the prototype
moving average).

Every function computes in float32 whatever the input dtype, runs on the
input's device, has no Python loop over classes or pixels and performs no
host synchronisation, so it is safe inside an AMP training step on CPU or
CUDA: the matrix products run with autocast disabled, because autocast
would otherwise run them in float16/bfloat16, where squared feature norms
overflow and sums over many pixels lose precision. None of them needs
gradients; the rectifier calls them under ``torch.no_grad``.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from ...utils.arg_checks import check_int, check_number
from .pseudo_label_functional import class_argmax


def class_feature_means(feats: Tensor,
                        labels: Tensor,
                        num_classes: int,
                        valid: Optional[Tensor] = None
                        ) -> Tuple[Tensor, Tensor]:
    """Per-class feature sums and pixel counts of one batch.

    These are the sufficient statistics of the batch prototypes ``eta'_k``
    used by the moving average (RML Eq. 10-11): ``eta'_k = sums[k] /
    counts[k]``. Sums and counts are returned instead of means so that they
    can be all-reduced across ranks before dividing.

    The reduction is a single one-hot matrix product ``onehot^T @ feats``,
    which is deterministic on CUDA (unlike atomic scatter-adds) and needs no
    loop over classes.

    Args:
        feats: Features (B, D, h, w).
        labels: int64 class index per feature pixel (B, h, w). Pixels whose
            label is outside ``[0, num_classes)`` (e.g. an ignore index of
            255) are excluded, which avoids a host-syncing range check.
        num_classes: Number of classes ``C``.
        valid: Optional bool (B, h, w); False pixels are excluded.

    Returns:
        ``(sums, counts)``: float32 (C, D) and float32 (C,).
    """
    _check_feats(feats)
    if labels.dtype != torch.long:
        raise ValueError(
            f'labels must be an int64 tensor, got dtype {labels.dtype}')
    batch, channels, height, width = feats.shape
    if labels.shape != (batch, height, width):
        raise ValueError(
            f'labels must have shape {(batch, height, width)} to match feats '
            f'{tuple(feats.shape)}, got {tuple(labels.shape)}')
    check_int('num_classes', num_classes, minimum=1)
    if valid is not None:
        _check_mask('valid', valid, labels.shape)

    # (N, D) rows of pixel features, N = B * h * w.
    flat_feats = feats.float().permute(0, 2, 3, 1).reshape(-1, channels)
    flat_labels = labels.reshape(-1)
    class_ids = torch.arange(num_classes, device=labels.device)
    onehot = flat_labels.unsqueeze(1) == class_ids  # (N, C)
    if valid is not None:
        onehot = onehot & valid.reshape(-1, 1)
    onehot = onehot.float()
    with _autocast_disabled(feats.device):
        sums = onehot.t() @ flat_feats
    counts = onehot.sum(dim=0)
    return sums, counts


def ema_update_prototypes(prototypes: Tensor, initialised: Tensor,
                          batch_means: Tensor, batch_present: Tensor,
                          momentum: float) -> Tuple[Tensor, Tensor]:
    """Moving-average update of the class prototypes (RML Eq. 10-11).

    For a class present in the batch, ``eta_k <- lambda * eta_k +
    (1 - lambda) * eta'_k``. A class seen for the first time takes the batch
    mean directly (``eta_k = eta'_k``): starting the average from the zero
    vector would drag the prototype towards the origin for thousands of
    iterations with ``lambda = 0.9999``. Classes absent from the batch keep
    their prototype and their flag.

    Args:
        prototypes: (C, D) current prototypes ``eta``.
        initialised: bool (C,), True where a prototype has been set.
        batch_means: (C, D) batch prototypes ``eta'``; rows of absent
            classes are ignored (they may hold anything, e.g. 0 or NaN).
        batch_present: bool (C,), True where the batch has pixels of a class.
        momentum: ``lambda`` in [0, 1]; the weight of the old prototype.

    Returns:
        ``(new_prototypes, new_initialised)``: float32 (C, D) and bool (C,).
    """
    _check_prototypes(prototypes, initialised)
    if batch_means.shape != prototypes.shape:
        raise ValueError(
            f'batch_means must have the prototypes\' shape '
            f'{tuple(prototypes.shape)}, got {tuple(batch_means.shape)}')
    _check_mask('batch_present', batch_present, initialised.shape)
    check_number('momentum', momentum, 0, 1)

    prototypes = prototypes.float()
    batch_means = batch_means.float()
    averaged = torch.lerp(batch_means, prototypes, momentum)
    first_seen = (batch_present & ~initialised).unsqueeze(1)
    seen_again = (batch_present & initialised).unsqueeze(1)
    new_prototypes = torch.where(
        first_seen, batch_means,
        torch.where(seen_again, averaged, prototypes))
    return new_prototypes, initialised | batch_present


def ema_update_class_prior(class_prior: Tensor, counts: Tensor,
                           initialised: Tensor, momentum: float) -> Tensor:
    """Moving average of the class frequencies ``pi`` used in Eq. 9.

    Per class, like the prototypes (:func:`ema_update_prototypes`): a class
    whose prior is set follows ``pi_k <- lambda * pi_k + (1 - lambda) *
    n_k / sum(n)`` (decaying in batches without it); a class seen for the
    first time takes its batch frequency ``n_k / sum(n)`` directly; a class
    never seen keeps ``pi_k`` (0). Initialising every class from the first
    batch instead would give a class absent from it ``pi_k = (1 - lambda)
    n_k / sum(n)`` when it appears: with ``lambda = 0.9999`` a ``log pi``
    penalty of about -9.2 nats that decays for thousands of iterations,
    enough to relabel a pixel lying on the class's own prototype. A class
    never seen has no prototype either and is masked out of Eq. 9
    (:func:`prototype_class_weights`), so its 0 is never used.

    ``pi`` therefore need not sum to 1 (e.g. after a late first sighting);
    Eq. 9's softmax only uses the ratios between classes. A batch with no
    counted pixel leaves ``pi`` unchanged.

    Args:
        class_prior: (C,) current prior ``pi``.
        counts: (C,) pixel count ``n`` per class in the batch.
        initialised: bool (C,), True where ``pi_k`` has been set (the
            rectifier passes its prototypes' flags before the update: the
            classes seen in an earlier batch).
        momentum: ``lambda`` in [0, 1].

    Returns:
        float32 (C,) new prior.
    """
    if class_prior.dim() != 1 or counts.shape != class_prior.shape:
        raise ValueError(
            f'class_prior and counts must both have shape (C,), got '
            f'{tuple(class_prior.shape)} and {tuple(counts.shape)}')
    _check_mask('initialised', initialised, class_prior.shape)
    check_number('momentum', momentum, 0, 1)
    class_prior = class_prior.float()
    counts = counts.float()
    total = counts.sum()
    frequencies = counts / total.clamp_min(1.0)
    averaged = torch.where(
        initialised, torch.lerp(frequencies, class_prior, momentum),
        torch.where(counts > 0, frequencies, class_prior))
    return torch.where(total > 0, averaged, class_prior)


def prototype_distances(feats: Tensor, prototypes: Tensor) -> Tensor:
    """Euclidean distance ``||f - eta_k||`` of every pixel to every prototype.

    Uses ``|f|^2 - 2 f.eta + |eta|^2`` so memory stays at (B, C, h, w)
    instead of materialising the (B, C, D, h, w) differences.

    Args:
        feats: (B, D, h, w) pixel features ``f``.
        prototypes: (C, D) prototypes ``eta``.

    Returns:
        float32 (B, C, h, w) distances.
    """
    _check_feats(feats)
    if prototypes.dim() != 2 or prototypes.shape[1] != feats.shape[1]:
        raise ValueError(
            f'prototypes must have shape (C, {feats.shape[1]}) to match '
            f'feats {tuple(feats.shape)}, got {tuple(prototypes.shape)}')
    feats = feats.float()
    prototypes = prototypes.float()
    with _autocast_disabled(feats.device):
        cross = torch.einsum('bdhw,cd->bchw', feats, prototypes)
    feat_sq = feats.square().sum(dim=1, keepdim=True)
    proto_sq = prototypes.square().sum(dim=1).view(1, -1, 1, 1)
    # Rounding can make the expansion slightly negative when f == eta.
    return (feat_sq - 2.0 * cross + proto_sq).clamp_min(0.0).sqrt()


def prototype_class_weights(feats: Tensor,
                            prototypes: Tensor,
                            initialised: Tensor,
                            log_prior: Optional[Tensor] = None,
                            temperature: float = 1.0) -> Tensor:
    """Class-wise confidence ``w`` of every pixel (RML Eq. 9).

    ``w_k = softmax_k(-||f - eta_k|| / T + log pi_k)``: a pixel whose feature
    is close to a class's prototype gets a high weight for that class. With
    ``log_prior`` this is the posterior of a nearest-prototype classifier
    with class prior ``pi``; ``T`` (``temperature``) = 1 is the plain
    definition.

    The softmax runs over initialised prototypes only; classes without a
    prototype get ``w_k = 0``. If no prototype is initialised at all, there
    is nothing to rectify with and ``w = 1`` everywhere (identity
    rectification). Both cases are resolved with tensor ops, not Python
    branches on tensor values, to avoid a host sync.

    Args:
        feats: (B, D, h, w) pixel features ``f``.
        prototypes: (C, D) prototypes ``eta``.
        initialised: bool (C,), True where a prototype has been set.
        log_prior: Optional (C,) ``log pi``; None means a uniform prior.
        temperature: ``T`` > 0 dividing the distances.

    Returns:
        float32 (B, C, h, w) weights.
    """
    _check_prototypes(prototypes, initialised)
    check_number('temperature', temperature, low=0, low_open=True)
    logits = -prototype_distances(feats, prototypes) / temperature
    if log_prior is not None:
        if log_prior.shape != initialised.shape:
            raise ValueError(
                f'log_prior must have shape {tuple(initialised.shape)}, got '
                f'{tuple(log_prior.shape)}')
        logits = logits + log_prior.float().view(1, -1, 1, 1)
    class_mask = initialised.view(1, -1, 1, 1)
    # A finite minimum (not -inf) keeps the softmax NaN-free even when no
    # class is initialised; the explicit mask then makes the weights of
    # uninitialised classes exactly 0.
    logits = logits.masked_fill(~class_mask, torch.finfo(torch.float32).min)
    weights = logits.softmax(dim=1) * class_mask
    return torch.where(initialised.any(), weights, torch.ones_like(weights))


def rectify_probabilities(probs: Tensor, weights: Tensor) -> Tensor:
    """Rectified class probabilities (RML Eq. 6).

    ``p~_k = w_k p_k / sum_j w_j p_j``. The renormalisation keeps ``p~`` a
    distribution, so the rectified map can be fed to any confidence- or
    entropy-based pseudo-labeler; the arg-max (hard pseudo-label) is the
    same with or without it. A pixel where every ``w_k p_k`` is 0 (the
    teacher gives all its mass to classes without a prototype, or underflow)
    keeps its original probabilities instead of dividing by zero.

    Args:
        probs: (B, C, H, W) class probabilities ``p``.
        weights: (B, C, H, W) class-wise confidence ``w``.

    Returns:
        float32 (B, C, H, W) rectified probabilities.
    """
    if probs.dim() != 4 or weights.shape != probs.shape:
        raise ValueError(
            f'probs must be (B, C, H, W) and weights must have the same '
            f'shape, got {tuple(probs.shape)} and {tuple(weights.shape)}')
    probs = probs.float()
    weighted = probs * weights.float()
    total = weighted.sum(dim=1, keepdim=True)
    return torch.where(total > 0, weighted / total.clamp_min(1e-30), probs)


def argmax_change_fraction(probs_before: Tensor,
                           probs_after: Tensor,
                           valid: Optional[Tensor] = None) -> Tensor:
    """Fraction of (valid) pixels whose arg-max class differs.

    Logged to see how much the rectification actually changes the hard
    pseudo-labels.

    Args:
        probs_before: (B, C, H, W) probabilities before rectification.
        probs_after: (B, C, H, W) probabilities after rectification.
        valid: Optional bool (B, H, W); the fraction is over True pixels.

    Returns:
        float32 0-dim tensor in [0, 1]; 0 when no pixel is valid.
    """
    if probs_before.dim() != 4 or probs_after.shape != probs_before.shape:
        raise ValueError(
            f'probs_before must be (B, C, H, W) and probs_after must have '
            f'the same shape, got {tuple(probs_before.shape)} and '
            f'{tuple(probs_after.shape)}')
    changed = class_argmax(probs_before) != class_argmax(probs_after)
    if valid is None:
        valid = torch.ones_like(changed)
    else:
        _check_mask('valid', valid, changed.shape)
    num_changed = (changed & valid).sum().float()
    return num_changed / valid.sum().clamp_min(1).float()


def _autocast_disabled(device: torch.device) -> torch.autocast:
    """Context that keeps float32 matrix products float32 under AMP."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_feats(feats: Tensor) -> None:
    if not isinstance(feats, Tensor) or feats.dim() != 4:
        shape = tuple(feats.shape) if isinstance(feats, Tensor) else None
        raise ValueError(
            f'feats must be a (B, D, h, w) tensor, got shape {shape}')
    if not torch.is_floating_point(feats):
        raise ValueError(
            f'feats must be a floating point tensor, got dtype {feats.dtype}')


def _check_prototypes(prototypes: Tensor, initialised: Tensor) -> None:
    if prototypes.dim() != 2:
        raise ValueError(
            f'prototypes must have shape (C, D), got '
            f'{tuple(prototypes.shape)}')
    _check_mask('initialised', initialised, prototypes.shape[:1])


def _check_mask(name: str, mask: Tensor, shape) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f'{name} must be a bool tensor, got {mask.dtype}')
    if mask.shape != tuple(shape):
        raise ValueError(
            f'{name} must have shape {tuple(shape)}, got '
            f'{tuple(mask.shape)}')
