"""Align a teacher's class distribution with the labeled data's."""
import torch
from mmengine.dist import all_reduce
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...utils.arg_checks import check_int, check_number
from ..utils.class_balance_functional import (align_distribution,
                                              class_probability_sums,
                                              ema_class_shares)


@MODELS.register_module()
class DistributionAlignment(nn.Module):
    """Distribution alignment of teacher probabilities (ReMixMatch 3.2).

    Holds two running class distributions: the labeled data's (from the
    ground truth of every labeled batch, :meth:`update_labeled`) and the
    teacher's mean prediction on unlabeled pixels (updated by each
    :meth:`forward` from the raw probabilities it receives). ``forward``
    returns ``Normalize(p * labeled / teacher)`` per pixel
    (:func:`align_distribution`), so the classes of the pseudo-labels drawn
    from it follow the labeled class distribution instead of drifting to the
    dominant class, and a class-weighted teacher's bias is divided out.

    Both estimates are buffers (saved and resumed with the model). Under
    DDP the per-batch counts are summed over ranks (one all-reduce of a
    (C,) vector each), so every rank aligns with the same factors.

    Args:
        num_classes: Number of classes C (the segmentor fills it in).
        momentum: Moving-average momentum of both estimates, in [0, 1).
            0.99 averages over about the last 100 batches.
        max_ratio: Bound on each class's factor (>= 1), see
            :func:`align_distribution`.
    """

    def __init__(self,
                 num_classes: int,
                 momentum: float = 0.99,
                 max_ratio: float = 10.0) -> None:
        super().__init__()
        check_int('num_classes', num_classes, minimum=1)
        check_number('momentum', momentum, 0, 1, high_open=True)
        check_number('max_ratio', max_ratio, low=1)
        self.num_classes = num_classes
        self.momentum = float(momentum)
        self.max_ratio = float(max_ratio)
        self.register_buffer('labeled_share', torch.zeros(num_classes))
        self.register_buffer('teacher_share', torch.zeros(num_classes))
        self.register_buffer('labeled_initialised', torch.tensor(False))
        self.register_buffer('teacher_initialised', torch.tensor(False))

    @torch.no_grad()
    def update_labeled(self, counts: Tensor) -> None:
        """Fold one labeled batch's per-class pixel counts (C,) in."""
        counts = _sum_over_ranks(counts.float())
        self.labeled_share.copy_(
            ema_class_shares(self.labeled_share, counts, self.momentum,
                             self.labeled_initialised))
        self.labeled_initialised |= counts.sum() > 0

    @torch.no_grad()
    def forward(self, probs: Tensor, valid: Tensor) -> Tensor:
        """Update the teacher estimate with ``probs``, return them aligned.

        Args:
            probs: (B, C, H, W) teacher softmax on the weak view.
            valid: bool (B, H, W) real image pixels.

        Returns:
            float32 (B, C, H, W) aligned probabilities. Before any labeled
            batch was seen, ``probs`` unchanged (as float32).
        """
        if probs.shape[1] != self.num_classes:
            raise ValueError(
                f'DistributionAlignment was built for {self.num_classes} '
                f'classes, got probabilities with {probs.shape[1]}')
        sums = _sum_over_ranks(class_probability_sums(probs, valid))
        self.teacher_share.copy_(
            ema_class_shares(self.teacher_share, sums, self.momentum,
                             self.teacher_initialised))
        self.teacher_initialised |= sums.sum() > 0
        aligned = align_distribution(probs, self.labeled_share,
                                     self.teacher_share, self.max_ratio)
        return torch.where(self.labeled_initialised, aligned, probs.float())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A checkpoint without these buffers (a plain mmseg checkpoint, or
        # one saved before the model had this component) starts the
        # estimates afresh instead of failing a strict load.
        for name, buffer in self._buffers.items():
            state_dict.setdefault(prefix + name, buffer.clone())
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, momentum={self.momentum}, '
                f'max_ratio={self.max_ratio}')


def _sum_over_ranks(values: Tensor) -> Tensor:
    """A copy of ``values`` summed over ranks (the caller's stays local)."""
    values = values.clone()
    all_reduce(values, op='sum')  # a no-op outside distributed training
    return values
