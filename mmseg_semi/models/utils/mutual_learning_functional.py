"""RML's mutual-learning objective (Zhang et al., 2021)."""
from typing import Dict, Optional, Tuple

from torch import Tensor

from .pseudo_label_functional import pseudo_label_cross_entropy


def mutual_learning_losses(student_logits: Tensor, own: Tuple[Tensor, Tensor],
                           peer: Tuple[Tensor, Tensor], ignore_index: int,
                           prefix: str,
                           class_weight: Optional[Tensor] = None
                           ) -> Dict[str, Tensor]:
    """One student's unsupervised terms of RML Eq. 5.

    The student is trained with cross-entropy against the hard pseudo-labels
    of its own teacher and of its peer's teacher, each with its weight.

    Args:
        student_logits: (B, C, H, W) logits on the (mixed) strong view.
        own: ``(labels, weight)`` of the student's own teacher: int64
            (B, H, W) labels and a scalar (number or 0-dim tensor) weight.
        peer: ``(labels, weight)`` of the other student's teacher.
        ignore_index: Label of pixels without a pseudo-label.
        prefix: Prefix of the keys, e.g. ``'unsup1_'``.
        class_weight: Optional (C,) weight of each pseudo-label class.

    Returns:
        ``{prefix}own_loss_ce`` and ``{prefix}peer_loss_ce``.
    """
    return {
        f'{prefix}{name}_loss_ce':
        pseudo_label_cross_entropy(student_logits, labels, ignore_index,
                                   class_weight) * weight
        for name, (labels, weight) in (('own', own), ('peer', peer))
    }
