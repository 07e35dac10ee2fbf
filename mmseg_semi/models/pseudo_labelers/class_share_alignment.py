"""Steer a teacher's arg-max class shares to the labeled data's."""
import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...utils.arg_checks import check_number
from ..utils.class_balance_functional import (argmax_class_counts,
                                              ema_class_shares,
                                              scale_class_probabilities,
                                              share_controller_step)
from .distribution_alignment import DistributionAlignment, _sum_over_ranks


@MODELS.register_module()
class ClassShareAlignment(DistributionAlignment):
    """Per-class factors on the teacher's probabilities, adjusted each step
    until the arg-max class shares equal the labeled data's.

    :class:`DistributionAlignment` divides the teacher's probabilities by
    its mean prediction (ReMixMatch), which fixes the mean but not the
    arg-max that hard pseudo-labels carry: on CCP 1/8 a teacher trained with
    class-weighted cross-entropy was the arg-max of ``hair`` and
    ``footwear`` on 2-3.6x their labeled shares after that alignment
    (docs/benchmarks/class_balance.md). Here each class has a factor
    ``exp(f_k)`` (a buffer, saved and resumed with the model);
    :meth:`forward` returns ``Normalize(p * exp(f))``, measures the arg-max
    shares of that result (a moving average over batches, summed over ranks
    under DDP: one all-reduce of a (C,) vector) and moves ``f`` by one
    integral step (:func:`share_controller_step`). Over-predicted classes
    lose weight and under-predicted ones gain it, whatever the cause.

    The labeled shares are tracked as in :class:`DistributionAlignment`
    (:meth:`update_labeled`); ``teacher_share`` holds the measured arg-max
    shares of the aligned probabilities.

    Args:
        num_classes: Number of classes C (the segmentor fills it in).
        momentum: Moving-average momentum of the labeled shares, in [0, 1).
        max_ratio: Bound of each class's factor (>= 1).
        rate: Integral gain in (0, 1]: the largest change of a log factor in
            one step (the log-share error is clipped to [-1, 1]).
        share_momentum: Moving-average momentum of the measured arg-max
            shares, in [0, 1). With ``rate=0.05`` and 0.9 the factors settle
            in about 50 steps without overshooting by more than a few
            percent.
    """

    def __init__(self,
                 num_classes: int,
                 momentum: float = 0.99,
                 max_ratio: float = 10.0,
                 rate: float = 0.05,
                 share_momentum: float = 0.9) -> None:
        super().__init__(num_classes, momentum, max_ratio)
        check_number('rate', rate, 0, 1, low_open=True)
        check_number('share_momentum', share_momentum, 0, 1, high_open=True)
        self.rate = float(rate)
        self.share_momentum = float(share_momentum)
        self.register_buffer('log_factor', torch.zeros(num_classes))

    @torch.no_grad()
    def forward(self, probs: Tensor, valid: Tensor) -> Tensor:
        """Scale ``probs`` by the current factors, then adjust the factors.

        Args:
            probs: (B, C, H, W) teacher softmax (or rectified softmax).
            valid: bool (B, H, W) real image pixels.

        Returns:
            float32 (B, C, H, W) probabilities that sum to 1 per pixel; the
            factors stay 1 until a labeled batch was seen.
        """
        if probs.shape[1] != self.num_classes:
            raise ValueError(
                f'ClassShareAlignment was built for {self.num_classes} '
                f'classes, got probabilities with {probs.shape[1]}')
        aligned = scale_class_probabilities(probs, self.log_factor)
        counts = _sum_over_ranks(argmax_class_counts(aligned, valid))
        self.teacher_share.copy_(
            ema_class_shares(self.teacher_share, counts, self.share_momentum,
                             self.teacher_initialised))
        self.teacher_initialised |= counts.sum() > 0
        stepped = share_controller_step(self.log_factor, self.labeled_share,
                                        self.teacher_share, self.rate,
                                        self.max_ratio)
        self.log_factor.copy_(
            torch.where(self.labeled_initialised & self.teacher_initialised,
                        stepped, self.log_factor))
        return aligned

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, rate={self.rate}, '
                f'share_momentum={self.share_momentum}')
