"""How strongly RML's two teachers agree, and their ensemble.

Zhang et al., "Robust Mutual Learning for Semi-supervised Semantic
Segmentation", 2021 (arXiv 2106.00609). Mutual learning only helps while the
two learners stay different: when their outputs couple, each student is
trained on what it already predicts. The paper measures this coupling
between the two networks' outputs (Fig. 2); the dual-student segmentor logs

* :func:`argmax_agreement`: the fraction of valid pixels on which the two
  teachers' hard pseudo-labels are equal;
* :func:`total_variation_distance`: ``0.5 * sum_c |p1_c - p2_c|`` per pixel,
  averaged over valid pixels (0 for identical softmax outputs, 1 for
  disjoint supports).

Both are logged, never optimised. They run on the inputs' device in float32,
vectorised over classes and pixels, without host synchronisation.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor

from .pseudo_label_functional import class_argmax


def argmax_agreement(probs1: Tensor,
                     probs2: Tensor,
                     valid: Optional[Tensor] = None) -> Tensor:
    """Fraction of valid pixels whose arg-max class is the same.

    Args:
        probs1: (B, C, H, W) class scores of the first teacher (softmax or
            rectified probabilities; only the arg-max matters).
        probs2: (B, C, H, W) class scores of the second teacher.
        valid: Optional bool (B, H, W); the fraction is over True pixels.

    Returns:
        float32 0-dim tensor in [0, 1]; 0 when no pixel is valid.
    """
    valid = _check_pair(probs1, probs2, valid)
    equal = class_argmax(probs1) == class_argmax(probs2)
    return _mean_over(equal.float(), valid)


def total_variation_distance(probs1: Tensor,
                             probs2: Tensor,
                             valid: Optional[Tensor] = None) -> Tensor:
    """Mean over valid pixels of ``0.5 * sum_c |p1_c - p2_c|`` (Fig. 2).

    Args:
        probs1: (B, C, H, W) softmax output of the first teacher.
        probs2: (B, C, H, W) softmax output of the second teacher.
        valid: Optional bool (B, H, W); the mean is over True pixels.

    Returns:
        float32 0-dim tensor in [0, 1] for probability inputs; 0 when no
        pixel is valid.
    """
    valid = _check_pair(probs1, probs2, valid)
    per_pixel = 0.5 * (probs1.float() - probs2.float()).abs().sum(dim=1)
    return _mean_over(per_pixel, valid)


def mean_probability_logits(probs: Sequence[Tensor]) -> Tensor:
    """Log of the averaged class probabilities of an ensemble.

    The average is what the ensemble predicts; its log is returned so that
    the result can go wherever logits are expected (``softmax`` of it gives
    back the average, since it already sums to one, and the arg-max is the
    average's).

    Args:
        probs: Non-empty sequence of (B, C, H, W) probability tensors of
            equal shape.

    Returns:
        float32 (B, C, H, W) log-probabilities. Probabilities are floored
        at the smallest normal float32 first: a ``-inf`` would turn into NaN
        when the logits are later resized bilinearly (``-inf * 0``).
    """
    if len(probs) == 0:
        raise ValueError('probs must hold at least one probability tensor')
    shapes = {tuple(p.shape) for p in probs}
    if len(shapes) != 1 or probs[0].dim() != 4:
        raise ValueError('probs must be (B, C, H, W) tensors of one shape, '
                         f'got shapes {[tuple(p.shape) for p in probs]}')
    average = torch.stack([p.float() for p in probs]).mean(dim=0)
    return average.clamp_min(torch.finfo(torch.float32).tiny).log()


def _check_pair(probs1: Tensor, probs2: Tensor,
                valid: Optional[Tensor]) -> Tensor:
    """Check two (B, C, H, W) tensors and a (B, H, W) mask; return the mask
    (all True when None)."""
    if probs1.dim() != 4 or probs1.shape != probs2.shape:
        raise ValueError(
            f'probs1 and probs2 must be (B, C, H, W) tensors of one shape, '
            f'got {tuple(probs1.shape)} and {tuple(probs2.shape)}')
    expected = probs1.shape[:1] + probs1.shape[2:]
    if valid is None:
        return torch.ones(expected, dtype=torch.bool, device=probs1.device)
    if valid.dtype != torch.bool or valid.shape != expected:
        raise ValueError(f'valid must be a bool tensor of shape '
                         f'{tuple(expected)}, got {valid.dtype} '
                         f'{tuple(valid.shape)}')
    return valid


def _mean_over(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of float (B, H, W) ``values`` over True pixels of ``valid``."""
    total = (values * valid).sum()
    return total / valid.sum().clamp_min(1).float()
