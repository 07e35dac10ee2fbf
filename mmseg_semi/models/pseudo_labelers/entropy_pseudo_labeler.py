"""U2PL entropy-based reliable / unreliable partition (Sec. 3.2)."""
from numbers import Real

import torch
from mmseg.registry import MODELS
from torch import Tensor

from ..utils.pseudo_label_functional import (adaptive_unsup_weight,
                                             dynamic_partition_alpha,
                                             entropy_quantile_threshold,
                                             pixel_entropy)
from .base_pseudo_labeler import BasePseudoLabeler
from .pseudo_labels import PseudoLabels


@MODELS.register_module()
class EntropyPseudoLabeler(BasePseudoLabeler):
    """Pseudo-labels the lowest-entropy pixels of the batch (U2PL Eq. 5-8).

    Each step the valid pixels whose entropy (Eq. 5) is in the top
    ``alpha_t`` fraction of the batch (Eq. 6) are unreliable; the rest get
    the teacher's arg-max class. ``alpha_t`` shrinks from ``alpha_0`` to 0
    over training (Eq. 7) with ``schedule='linear'`` or stays at
    ``alpha_0`` with ``schedule='constant'``. The loss weight is the
    adaptive ``lambda_u`` of Eq. 8, or the constant ``eta`` when
    ``adaptive_weight=False``.

    Args:
        alpha_0: Initial unreliable proportion in [0, 1].
        eta: Base unsupervised loss weight (>= 0).
        adaptive_weight: Use Eq. 8 instead of a constant weight.
        ignore_index: Label of pixels without a pseudo-label.
        schedule: 'linear' (Eq. 7) or 'constant'.
    """

    SCHEDULES = ('linear', 'constant')

    def __init__(self,
                 alpha_0: float = 0.2,
                 eta: float = 1.0,
                 adaptive_weight: bool = True,
                 ignore_index: int = 255,
                 schedule: str = 'linear') -> None:
        super().__init__(ignore_index=ignore_index)
        if isinstance(alpha_0, bool) or not isinstance(alpha_0, Real) \
                or not 0 <= alpha_0 <= 1:
            raise ValueError(
                f'alpha_0 must be a number in [0, 1], got {alpha_0!r}')
        if isinstance(eta, bool) or not isinstance(eta, Real) \
                or not eta >= 0:
            raise ValueError(f'eta must be a non-negative number, got {eta!r}')
        if schedule not in self.SCHEDULES:
            raise ValueError(
                f'schedule must be one of {self.SCHEDULES}, got {schedule!r}')
        self.alpha_0 = float(alpha_0)
        self.eta = float(eta)
        self.adaptive_weight = bool(adaptive_weight)
        self.schedule = schedule

    def current_alpha(self, iteration: int, max_iters: int) -> float:
        """Unreliable proportion ``alpha_t`` at this point of training."""
        if self.schedule == 'constant':
            return self.alpha_0
        return dynamic_partition_alpha(self.alpha_0, iteration, max_iters)

    def label(self, probs: Tensor, valid_mask: Tensor, iteration: int,
              max_iters: int) -> PseudoLabels:
        alpha = self.current_alpha(iteration, max_iters)
        entropy = pixel_entropy(probs, dim=1)
        threshold = entropy_quantile_threshold(entropy, valid_mask, alpha)
        # Strict '<' matches the reference: entropy >= gamma_t is unreliable.
        reliable = valid_mask & (entropy < threshold)
        if self.adaptive_weight:
            weight = adaptive_unsup_weight(reliable, eta=self.eta)
        else:
            weight = torch.tensor(
                self.eta, dtype=torch.float32, device=probs.device)
        return PseudoLabels(
            labels=self.argmax_labels(probs, reliable),
            reliable=reliable,
            valid=valid_mask,
            probs=probs,
            entropy=entropy,
            weight=weight,
            threshold=threshold,
            alpha=alpha)
