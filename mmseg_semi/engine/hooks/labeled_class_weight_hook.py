"""Fill class weights from the labeled masks when training starts."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ...datasets.class_frequency import (dataset_label_maps,
                                         label_pixel_counts,
                                         median_frequency_weights)
from ...models.losses import ClassWeightedCrossEntropyLoss


@HOOKS.register_module()
class LabeledClassWeightHook(Hook):
    """Median-frequency class weights of the labeled training masks.

    Before training, every ``ClassWeightedCrossEntropyLoss`` of the model
    configured with ``class_weight='median_frequency'`` gets the weights of
    the labeled training set (``train_dataloader``; for semi-supervised
    runs the labeled split): each distinct mask is read once, as the
    dataset's pipeline decodes it. The weights depend only on the split, so
    every rank and every resumed run computes the same ones; they are
    logged. A model without such a loss is left alone and nothing is read.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        pending = [
            module for module in model.modules()
            if isinstance(module, ClassWeightedCrossEntropyLoss)
            and module.weights_pending
        ]
        if not pending:
            return
        dataset = runner.train_dataloader.dataset
        num_classes = len(dataset.metainfo['classes'])
        maps = 0

        def counted_maps():
            nonlocal maps
            for label_map in dataset_label_maps(dataset):
                maps += 1
                yield label_map

        # Labels outside [0, C) (the ignore index) are not counted.
        weights = median_frequency_weights(
            *label_pixel_counts(counted_maps(), num_classes))
        for loss in pending:
            loss.set_class_weight(weights.tolist())
        runner.logger.info(
            f'median-frequency class weights of {maps} labeled masks: ' +
            ', '.join(f'{w:.4f}' for w in weights.tolist()))
