"""U2PL entropy-based reliable / unreliable partition (Sec. 3.2)."""
import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...utils.arg_checks import check_bool, check_choice, check_number
from ..utils.class_balance_functional import classwise_entropy_thresholds
from ..utils.pseudo_label_functional import (adaptive_unsup_weight,
                                             class_argmax,
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

    With ``class_wise=True`` (the default) the quantile of Eq. 6 is taken
    among the pixels of each predicted class
    (:func:`classwise_entropy_thresholds`): every class keeps ``1 -
    alpha_t`` of its own pixels. The paper's batch-wide quantile
    (``class_wise=False``, the U2PL paper configs) keeps the most certain
    pixels of the batch whatever their class; where one class dominates, the
    rare classes' pixels are the ones it drops, step after step, and the
    student drifts to the dominant class (on a map with one class at p=0.95
    on 95% of the pixels and a rare class at p=0.6 on 5%, alpha=0.2 keeps
    none of the rare class's pixels).

    Args:
        alpha_0: Initial unreliable proportion in [0, 1].
        eta: Base unsupervised loss weight (>= 0).
        adaptive_weight: Use Eq. 8 instead of a constant weight.
        ignore_index: Label of pixels without a pseudo-label.
        schedule: 'linear' (Eq. 7) or 'constant'.
        class_wise: Per-class quantiles instead of one batch-wide quantile.
    """

    SCHEDULES = ('linear', 'constant')

    def __init__(self,
                 alpha_0: float = 0.2,
                 eta: float = 1.0,
                 adaptive_weight: bool = True,
                 ignore_index: int = 255,
                 schedule: str = 'linear',
                 class_wise: bool = True) -> None:
        super().__init__(ignore_index=ignore_index)
        self.alpha_0 = float(check_number('alpha_0', alpha_0, 0, 1))
        self.eta = float(check_number('eta', eta, low=0))
        self.adaptive_weight = bool(adaptive_weight)
        self.schedule = check_choice('schedule', schedule, self.SCHEDULES)
        self.class_wise = check_bool('class_wise', class_wise)

    def current_alpha(self, iteration: int, max_iters: int) -> float:
        """Unreliable proportion ``alpha_t`` at this point of training."""
        if self.schedule == 'constant':
            return self.alpha_0
        return dynamic_partition_alpha(self.alpha_0, iteration, max_iters)

    def label(self, probs: Tensor, valid_mask: Tensor, iteration: int,
              max_iters: int) -> PseudoLabels:
        alpha = self.current_alpha(iteration, max_iters)
        entropy = pixel_entropy(probs, dim=1)
        classes = class_argmax(probs)
        if self.class_wise:
            class_thresholds = classwise_entropy_thresholds(
                entropy, classes, valid_mask, alpha, probs.shape[1])
            pixel_threshold = class_thresholds[classes]
            # Logged as one number: the pixel-weighted mean threshold.
            threshold = mean_over_valid(pixel_threshold, valid_mask)
        else:
            threshold = entropy_quantile_threshold(entropy, valid_mask, alpha)
            pixel_threshold = threshold
        # Strict '<' matches the reference: entropy >= gamma_t is unreliable.
        reliable = valid_mask & (entropy < pixel_threshold)
        if self.adaptive_weight:
            weight = adaptive_unsup_weight(reliable, eta=self.eta)
        else:
            weight = torch.tensor(
                self.eta, dtype=torch.float32, device=probs.device)
        return PseudoLabels(
            labels=classes.masked_fill(~reliable, self.ignore_index),
            reliable=reliable,
            valid=valid_mask,
            probs=probs,
            weight=weight,
            threshold=threshold,
            alpha=alpha)


def mean_over_valid(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over the ``valid`` pixels (0 when there is none);
    ``+inf`` values (alpha_t = 0) give ``+inf``."""
    picked = torch.where(valid, values, torch.zeros_like(values))
    return picked.sum() / valid.sum().clamp_min(1)
