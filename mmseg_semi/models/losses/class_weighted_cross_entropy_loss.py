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
    another reduction, it is mmseg's loss unchanged.

    Args:
        class_weight: One weight per class, a file of them (as mmseg's
            ``CrossEntropyLoss``), or ``'median_frequency'``: computed from
            the labeled training masks when training starts
            (``LabeledClassWeightHook``, in ``default_hooks`` of this
            package's schedules), so one config serves every dataset.
        **kwargs: Other ``CrossEntropyLoss`` arguments.
    """

    #: ``class_weight`` value whose weights ``LabeledClassWeightHook`` fills.
    FROM_LABELED_MASKS = 'median_frequency'

    def __init__(self, class_weight=None, **kwargs) -> None:
        self.weights_pending = class_weight == self.FROM_LABELED_MASKS
        super().__init__(
            class_weight=None if self.weights_pending else class_weight,
            **kwargs)

    def set_class_weight(self, weights) -> None:
        """Use ``weights`` (one per class) from now on."""
        self.class_weight = [float(w) for w in weights]
        self.weights_pending = False

    def forward(self,
                cls_score,
                label,
                weight=None,
                avg_factor=None,
                reduction_override=None,
                ignore_index=-100,
                **kwargs):
        if self.weights_pending:
            raise RuntimeError(
                f"{type(self).__name__}(class_weight="
                f"'{self.FROM_LABELED_MASKS}') has no weights yet: they are "
                'computed from the labeled masks by LabeledClassWeightHook '
                "when training starts. Add dict(type='LabeledClassWeightHook')"
                ' to default_hooks or custom_hooks, or give the weights as a '
                'list (tools/dataset_converters/compute_class_weights.py).')
        reduction = reduction_override or self.reduction
        if self.class_weight is not None and avg_factor is None \
                and reduction == 'mean' and not self.use_sigmoid \
                and not self.use_mask:
            avg_factor = class_weighted_avg_factor(
                label, cls_score.new_tensor(self.class_weight), ignore_index)
        return super().forward(cls_score, label, weight, avg_factor,
                               reduction_override, ignore_index, **kwargs)
