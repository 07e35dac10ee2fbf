"""Pure tensor functions that keep pseudo-labels' classes balanced.

A batch-wide reliability rule (U2PL's alpha_t entropy quantile, a FixMatch
confidence threshold) keeps the most certain pixels whatever their class, so
where one class dominates, the rare classes lose their pseudo-labels first
and self-training drifts to the dominant class. Three remedies live here:

* distribution alignment (Berthelot et al., "ReMixMatch", ICLR 2020,
  Sec. 3.2): scale the teacher's probabilities by the ratio of the labeled
  data's class shares to a running mean of the teacher's own predictions, so
  the pseudo-labels' class distribution follows the labeled one. It also
  undoes the bias ``q_k ~ c_k p(k|x)`` of a teacher trained with
  class-weighted cross-entropy, whose mean prediction carries the weights;
* class-wise reliability quantiles (as the class-wise thresholds of
  FreeMatch / DARS): the alpha_t quantile of U2PL Eq. 6 is taken among the
  pixels of each predicted class, so each class keeps ``1 - alpha_t`` of its
  own pixels;
* removal of the supervised loss's class weights from the teacher's
  softmax, whose arg-max otherwise over-predicts the up-weighted classes.

Every function runs on the input's device in float32 (float64 for order
statistics) without host synchronisation.
"""
import math
from typing import Optional

import torch
from torch import Tensor

from ...utils.arg_checks import check_number


def class_pixel_counts(labels: Tensor,
                       num_classes: int,
                       mask: Optional[Tensor] = None,
                       ignore_index: int = 255) -> Tensor:
    """Number of pixels of each class, float32 (C,).

    Pixels whose label is ``ignore_index`` (or any value outside
    ``[0, num_classes)``) or where ``mask`` is False are not counted. Uses
    ``scatter_add`` into C + 1 bins (the last collects the uncounted pixels),
    so unlike ``bincount`` it needs no host sync for the output size.

    Args:
        labels: Integer labels of any shape, e.g. (B, H, W).
        num_classes: C.
        mask: Optional bool tensor of ``labels``' shape.
        ignore_index: Label value that is not a class.
    """
    labels = labels.flatten().long()
    counted = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    if mask is not None:
        counted &= mask.flatten()
    bins = torch.where(counted, labels, num_classes)
    counts = torch.zeros(
        num_classes + 1, dtype=torch.float32, device=labels.device)
    counts.scatter_add_(0, bins, torch.ones_like(bins, dtype=torch.float32))
    return counts[:num_classes]


def class_probability_sums(probs: Tensor, valid: Tensor) -> Tensor:
    """Sum of each class's probability over the valid pixels, float32 (C,).

    Divided by the number of valid pixels it is the teacher's mean predicted
    class distribution, the running estimate of ReMixMatch's alignment.

    Args:
        probs: (B, C, H, W) probabilities.
        valid: bool (B, H, W).
    """
    weights = valid.unsqueeze(1).to(torch.float32)
    return (probs.float() * weights).sum(dim=(0, 2, 3))


def ema_class_shares(running: Tensor, counts: Tensor, momentum: float,
                     initialised: Tensor) -> Tensor:
    """Moving average of class shares, started at the first batch's shares.

    ``s <- m s + (1 - m) counts / sum(counts)``; before the first update
    (``initialised`` False) the batch's own shares replace ``running``, so
    the estimate carries no bias towards its zero start. A batch with no
    counted pixel leaves ``running`` unchanged.

    Args:
        running: float32 (C,) current shares.
        counts: float32 (C,) this batch's counts (or probability sums).
        momentum: m in [0, 1).
        initialised: 0-dim bool tensor.

    Returns:
        The new (C,) shares.
    """
    total = counts.sum()
    shares = counts / total.clamp_min(1e-12)
    blended = momentum * running + (1.0 - momentum) * shares
    updated = torch.where(initialised, blended, shares)
    return torch.where(total > 0, updated, running)


def align_distribution(probs: Tensor,
                       target_shares: Tensor,
                       estimated_shares: Tensor,
                       max_ratio: float = 10.0,
                       eps: float = 1e-6) -> Tensor:
    """Distribution alignment of class probabilities (ReMixMatch Sec. 3.2).

    ``p~(k|x) = Normalize(p(k|x) * target_k / estimate_k)`` over the class
    dimension, where ``target`` is the labeled data's class distribution and
    ``estimate`` a running mean of the model's predictions on unlabeled
    data. The ratio is clipped to ``[1 / max_ratio, max_ratio]``: a class the
    teacher has not predicted yet (estimate ~ 0) gets a bounded boost instead
    of turning every pixel with a trace of it into that class.

    Args:
        probs: (B, C, H, W) probabilities.
        target_shares: (C,) labeled class shares.
        estimated_shares: (C,) running mean prediction.
        max_ratio: Bound of the per-class factor (>= 1).
        eps: Floor of both share vectors.

    Returns:
        float32 (B, C, H, W) probabilities that sum to 1 per pixel.
    """
    if max_ratio < 1:
        raise ValueError(f'max_ratio must be >= 1, got {max_ratio!r}')
    ratio = target_shares.float().clamp_min(eps) / \
        estimated_shares.float().clamp_min(eps)
    ratio = ratio.clamp(1.0 / max_ratio, max_ratio)
    aligned = probs.float() * ratio.view(1, -1, 1, 1)
    return aligned / aligned.sum(dim=1, keepdim=True).clamp_min(1e-12)


def remove_class_weights(probs: Tensor,
                         class_weight: Tensor,
                         power: float = 1.0) -> Tensor:
    """The posterior of a network trained with class-weighted cross-entropy,
    with its weights' prior removed: ``Normalize(q_k / c_k ** power)``.

    Cross-entropy with class weights ``c`` is minimised by ``q_k ~ c_k
    p(k|x)`` (the weights act as a class prior), so the arg-max of such a
    teacher over-predicts every up-weighted class; ``power=1`` returns the
    unweighted posterior ``p``, ``power=0`` leaves ``q`` as it is. A class
    of weight 0 (never in the labeled data) gets probability 0 for any
    ``power > 0``.

    Args:
        probs: (B, C, H, W) softmax ``q``.
        class_weight: (C,) non-negative weights ``c`` of the supervised loss.
        power: Exponent in [0, 1] (the segmentors use the training progress
            ``t / T``).

    Returns:
        float32 (B, C, H, W) probabilities that sum to 1 per pixel.
    """
    check_number('power', power, 0, 1)
    weight = class_weight.float()
    absent = 1.0 if power == 0 else 0.0
    factor = torch.where(weight > 0, weight.clamp_min(1e-12).pow(-power),
                         torch.full_like(weight, absent))
    unweighted = probs.float() * factor.view(1, -1, 1, 1)
    return unweighted / unweighted.sum(dim=1, keepdim=True).clamp_min(1e-12)


def classwise_entropy_thresholds(entropy: Tensor, classes: Tensor,
                                 valid: Tensor, alpha: float,
                                 num_classes: int) -> Tensor:
    """Per-class entropy thresholds: U2PL Eq. 6 within each predicted class.

    ``gamma_c`` is the ``(1 - alpha)`` quantile (numpy's linear method, as
    :func:`entropy_quantile_threshold`) of the entropies of the valid pixels
    whose predicted class is ``c``; ``entropy < gamma_{class}`` is reliable,
    so each predicted class keeps the same ``1 - alpha`` share of its own
    pixels however rare it is. One sort of a class-major key gives every
    class's order statistics at once.

    Special cases as the batch-wide threshold: ``alpha == 0`` gives ``+inf``
    (all reliable); a class with no pixel gets 0 (it has nothing to keep).

    Args:
        entropy: (B, H, W) per-pixel entropy (>= 0).
        classes: int64 (B, H, W) predicted class per pixel.
        valid: bool (B, H, W).
        alpha: Unreliable proportion in [0, 1].
        num_classes: C.

    Returns:
        float32 (C,) thresholds on ``entropy``'s device.
    """
    if entropy.shape != classes.shape or entropy.shape != valid.shape:
        raise ValueError(
            'entropy, classes and valid must have one shape, got '
            f'{tuple(entropy.shape)}, {tuple(classes.shape)} and '
            f'{tuple(valid.shape)}')
    if not 0 <= alpha <= 1:
        raise ValueError(f'alpha must be in [0, 1], got {alpha!r}')
    device = entropy.device
    if alpha == 0:
        return torch.full((num_classes, ), math.inf, device=device)
    if entropy.numel() == 0:
        return torch.zeros(num_classes, device=device)
    entropy = entropy.flatten().double()
    classes = classes.flatten().long()
    counted = valid.flatten() & (classes >= 0) & (classes < num_classes)
    # Entropies are < log(C) + 1, so class * span + entropy orders pixels by
    # class, then by entropy; invalid pixels sort after every class.
    span = math.log(max(num_classes, 2)) + 1.0
    key = torch.where(counted, classes.double() * span + entropy,
                      math.inf)
    sorted_key = key.sort().values
    # Arg-max classes have no ignore value (255 is a class when C > 255).
    counts = class_pixel_counts(classes, num_classes, counted,
                                ignore_index=-1).long()
    starts = torch.cumsum(counts, 0) - counts
    last = (counts - 1).clamp_min(0)
    position = (1.0 - alpha) * last.double()
    lower = position.floor().long()
    upper = torch.minimum(lower + 1, last)
    fraction = position - lower.double()
    lower_index = (starts + lower).clamp(0, key.numel() - 1)
    upper_index = (starts + upper).clamp(0, key.numel() - 1)
    offsets = torch.arange(num_classes, device=device,
                           dtype=torch.float64) * span
    low = sorted_key.gather(0, lower_index) - offsets
    high = sorted_key.gather(0, upper_index) - offsets
    threshold = torch.lerp(low, high, fraction)
    return torch.where(counts > 0, threshold,
                       torch.zeros_like(threshold)).float()
