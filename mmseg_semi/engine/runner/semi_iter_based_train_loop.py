import logging
from typing import Dict, List, Optional, Tuple, Union

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader

from mmseg.registry import LOOPS


@LOOPS.register_module()
class SemiIterBasedTrainLoop(IterBasedTrainLoop):
    """Iteration-based loop drawing a labeled and an unlabeled batch per step.

    ``train_dataloader`` (the runner's) yields labeled batches; the
    ``unlabeled_dataloader`` given here yields unlabeled ones, each with its
    own batch size and sampler (mmengine's ``InfiniteSampler`` shards the
    indices across DDP ranks, so ranks see disjoint unlabeled samples). The
    model receives ``dict(labeled=..., unlabeled=...)`` and, before each step,
    ``set_train_progress(iteration, max_iters)`` so schedules can depend on
    training progress t/T.

    On resume both iterators are advanced past the batches already used, so
    data order from the resumed iteration on matches an uninterrupted run.

    Args:
        runner: The runner.
        dataloader: Labeled dataloader (built by the runner).
        unlabeled_dataloader: Unlabeled dataloader or its config.
        max_iters: Total iterations.
        val_begin, val_interval, dynamic_intervals: as
            :class:`mmengine.runner.IterBasedTrainLoop`.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 unlabeled_dataloader: Union[DataLoader, Dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None
                 ) -> None:
        super().__init__(runner, dataloader, max_iters, val_begin,
                         val_interval, dynamic_intervals)
        if isinstance(unlabeled_dataloader, dict):
            diff_rank_seed = runner._randomness_cfg.get(
                'diff_rank_seed', False)
            unlabeled_dataloader = runner.build_dataloader(
                unlabeled_dataloader,
                seed=runner.seed,
                diff_rank_seed=diff_rank_seed)
        if len(unlabeled_dataloader.dataset) == 0:
            raise ValueError('train_cfg.unlabeled_dataloader: the unlabeled '
                             'dataset is empty')
        self.unlabeled_dataloader = unlabeled_dataloader
        self.unlabeled_iterator = _InfiniteDataloaderIterator(
            unlabeled_dataloader)
        warn_if_splits_overlap(self.dataloader.dataset,
                               unlabeled_dataloader.dataset)

    def run(self):
        """Launch training (mmengine's loop plus the unlabeled iterator)."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(
                f'Advance labeled and unlabeled dataloaders {self._iter} '
                'steps to skip data that has already been trained',
                logger='current',
                level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
                next(self.unlabeled_iterator)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = dict(
                labeled=next(self.dataloader_iterator),
                unlabeled=next(self.unlabeled_iterator))
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None
                    and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch: dict) -> None:
        model = self.runner.model
        if is_model_wrapper(model):
            model = model.module
        if hasattr(model, 'set_train_progress'):
            model.set_train_progress(self._iter, self._max_iters)
        super().run_iter(data_batch)


def warn_if_splits_overlap(labeled_dataset, unlabeled_dataset) -> None:
    """Warn (with the count) when an image is both labeled and unlabeled."""
    try:
        labeled = image_paths(labeled_dataset)
        unlabeled = image_paths(unlabeled_dataset)
    except (AttributeError, KeyError, TypeError):
        return  # not mmseg-style datasets: nothing to compare
    overlap = labeled & unlabeled
    if overlap:
        example = sorted(overlap)[0]
        print_log(
            f'{len(overlap)} image(s) are in both the labeled and the '
            f'unlabeled split (e.g. {example}); they will be used as '
            'labeled and unlabeled data at once',
            logger='current',
            level=logging.WARNING)


def image_paths(dataset) -> set:
    return {
        dataset.get_data_info(i)['img_path']
        for i in range(len(dataset))
    }
