"""FixMatch-style fixed confidence threshold."""
import torch
from mmseg.registry import MODELS
from torch import Tensor

from ...utils.arg_checks import check_number
from .base_pseudo_labeler import BasePseudoLabeler
from .pseudo_labels import PseudoLabels


@MODELS.register_module()
class ConfidencePseudoLabeler(BasePseudoLabeler):
    """Pseudo-labels valid pixels whose top probability is >= ``threshold``.

    The weight is the constant ``weight``, so ``weight *
    pseudo_label_cross_entropy(...)`` averages the loss over all B*H*W
    pixels, as FixMatch does (unselected pixels count as zero loss).

    Args:
        threshold: Confidence threshold in [0, 1] (0.95 in FixMatch).
        weight: Unsupervised loss weight (>= 0).
        ignore_index: Label of pixels without a pseudo-label.
    """

    def __init__(self,
                 threshold: float = 0.95,
                 weight: float = 1.0,
                 ignore_index: int = 255) -> None:
        super().__init__(ignore_index=ignore_index)
        self.threshold = float(check_number('threshold', threshold, 0, 1))
        self.weight = float(check_number('weight', weight, low=0))

    def label(self, probs: Tensor, valid_mask: Tensor, iteration: int,
              max_iters: int) -> PseudoLabels:
        confidence = probs.max(dim=1).values
        reliable = valid_mask & (confidence >= self.threshold)
        return PseudoLabels(
            labels=self.argmax_labels(probs, reliable),
            reliable=reliable,
            valid=valid_mask,
            probs=probs,
            weight=torch.tensor(
                self.weight, dtype=torch.float32, device=probs.device),
            threshold=torch.tensor(
                self.threshold, dtype=torch.float32, device=probs.device),
            alpha=None)
