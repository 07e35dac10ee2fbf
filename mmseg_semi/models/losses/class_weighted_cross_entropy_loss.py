"""mmseg's cross-entropy, averaged as PyTorch does: over the pixels that
count (not ignored, kept by a sampler), class weights included."""
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS

from ..utils.pseudo_label_functional import counted_pixel_weight


@MODELS.register_module()
class ClassWeightedCrossEntropyLoss(CrossEntropyLoss):
    """``CrossEntropyLoss`` averaged over the pixels that count.

    mmseg 1.2.2's ``cross_entropy`` divides by every pixel of the batch
    (ignored and padded ones included) unless ``avg_non_ignore``, and even
    then ignores the pixel weights of a sampler: with OHEM the loss of the
    kept pixels is divided by all pixels, so the supervised term shrinks to
    kept/all of the mean (0.1-0.3 late in training). Its class-weighted
    normaliser also indexes the weights with every label, the ignore index
    included (IndexError on a 255 pixel). Here the normaliser is passed in,
    computed vectorised: the sum over the pixels not ignored of their class
    weight (1 without ``class_weight``) times their sampler weight (1
    without a sampler) -- PyTorch's (weighted) mean over the counted
    pixels, as U2PL's ``CELoss``/``OhemCrossEntropy2dTensor`` average.
    With another reduction, sigmoid or mask mode it is mmseg's loss
    unchanged.

    Args:
        class_weight: One weight per class, a file of them (as mmseg's
            ``CrossEntropyLoss``), or ``'median_frequency'``: computed from
            the labeled training masks when training starts
            (``LabeledClassWeightHook``, in ``default_hooks`` of this
            package's schedules), so one config serves every dataset.
        **kwargs: Other ``CrossEntropyLoss`` arguments
            (``avg_non_ignore`` is always True).
    """

    #: ``class_weight`` value whose weights ``LabeledClassWeightHook`` fills.
    FROM_LABELED_MASKS = 'median_frequency'

    def __init__(self, class_weight=None, **kwargs) -> None:
        if not kwargs.setdefault('avg_non_ignore', True):
            raise ValueError(
                f'{type(self).__name__} always averages over the pixels not '
                'ignored (PyTorch\'s mean); got avg_non_ignore=False: use '
                "mmseg's CrossEntropyLoss for its all-pixel mean")
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
        if avg_factor is None and reduction == 'mean' \
                and not self.use_sigmoid and not self.use_mask:
            class_weight = None if self.class_weight is None else \
                cls_score.new_tensor(self.class_weight)
            avg_factor = counted_pixel_weight(label, ignore_index,
                                              class_weight, weight)
        return super().forward(cls_score, label, weight, avg_factor,
                               reduction_override, ignore_index, **kwargs)
