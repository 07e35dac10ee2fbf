"""mmseg's cross-entropy, with class weights averaged as PyTorch does."""
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS

from ..utils.pseudo_label_functional import class_weighted_avg_factor


@MODELS.register_module()
class ClassWeightedCrossEntropyLoss(CrossEntropyLoss):
    """``CrossEntropyLoss`` whose ``class_weight`` works with ignored pixels.

    mmseg 1.2.2's ``cross_entropy`` normalises a class-weighted loss by
    indexing the weights with every label, the ignore index included, so a
    label map with an ignored (255) pixel raises IndexError (and the lookup
    loops over the batch in Python). Here the normaliser is passed in,
    computed vectorised: the sum of the class weights of the pixels not
    ignored, i.e. PyTorch's weighted mean. Without ``class_weight``, or with
    another reduction, it is mmseg's loss unchanged. Arguments as
    ``CrossEntropyLoss``.
    """

    def forward(self,
                cls_score,
                label,
                weight=None,
                avg_factor=None,
                reduction_override=None,
                ignore_index=-100,
                **kwargs):
        reduction = reduction_override or self.reduction
        if self.class_weight is not None and avg_factor is None \
                and reduction == 'mean' and not self.use_sigmoid \
                and not self.use_mask:
            avg_factor = class_weighted_avg_factor(
                label, cls_score.new_tensor(self.class_weight), ignore_index)
        return super().forward(cls_score, label, weight, avg_factor,
                               reduction_override, ignore_index, **kwargs)
