"""The result of pseudo-labelling one unlabeled batch."""
from dataclasses import dataclass
from typing import Optional

from torch import Tensor


@dataclass
class PseudoLabels:
    """Teacher pseudo-labels and the statistics used to select them.

    A plain structure (not registered): a pseudo-labeler fills it, the
    segmentor reads it to build the unsupervised losses. The unsupervised
    cross-entropy is ``weight * pseudo_label_cross_entropy(student_logits,
    labels)``; ``unreliable`` gives the pixels U2PL uses as negatives.

    Attributes:
        labels: int64 (B, H, W) class indices; ``ignore_index`` wherever the
            pixel is not reliable or not valid.
        reliable: bool (B, H, W) pixels whose pseudo-label is trusted.
        valid: bool (B, H, W) pixels of real image content (not padding).
        probs: float32 (B, C, H, W) teacher probabilities that were used.
        weight: 0-dim float32 weight for the unsupervised loss.
        threshold: 0-dim float32 selection threshold (the entropy threshold
            ``gamma_t`` or the confidence threshold).
        alpha: The unreliable proportion ``alpha_t`` used, or None when the
            selection is not proportion-based.
        rectified_ratio: 0-dim fraction of valid pixels whose arg-max a
            prototype rectifier changed before labelling, or None.
    """

    labels: Tensor
    reliable: Tensor
    valid: Tensor
    probs: Tensor
    weight: Tensor
    threshold: Tensor
    alpha: Optional[float] = None
    rectified_ratio: Optional[Tensor] = None

    @property
    def unreliable(self) -> Tensor:
        """bool (B, H, W): valid pixels that were not selected as reliable."""
        return self.valid & ~self.reliable
