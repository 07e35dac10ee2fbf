import logging
import random
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dist import get_world_size
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
    The random state (python, numpy, torch) after each optimiser step is kept
    in the message hub, which checkpoints save, and restored once the
    iterators are advanced; validation runs with the random state saved and
    restored around it. With a fixed seed a resumed run therefore draws the
    same augmentations, CutMix boxes and dropout masks as an uninterrupted
    one (exactly so in one process, or with data-loader workers under DDP;
    with ``randomness.diff_rank_seed`` under DDP only data order resumes).

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
            split = getattr(unlabeled_dataloader.dataset, 'ann_file', None)
            raise ValueError('train_cfg.unlabeled_dataloader: the unlabeled '
                             f'dataset is empty (ann_file={split!r})')
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
            self._restore_random_state()
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
                with preserved_random_state():  # val must not shift training
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
        # mmengine's run_iter, plus the random state recorded before the
        # after_train_iter hooks (CheckpointHook) save the message hub.
        self.runner.call_hook(
            'before_train_iter', batch_idx=self._iter, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        self.runner.message_hub.update_info(RANDOM_STATE_KEY,
                                            get_random_state())
        self.runner.call_hook(
            'after_train_iter',
            batch_idx=self._iter,
            data_batch=data_batch,
            outputs=outputs)
        self._iter += 1

    def _restore_random_state(self) -> None:
        """Random state of the checkpoint's iteration, when it has one."""
        state = self.runner.message_hub.get_info(RANDOM_STATE_KEY)
        if state is None:
            return  # a checkpoint written without this loop
        if get_world_size() > 1 and self.runner._randomness_cfg.get(
                'diff_rank_seed', False):
            print_log(
                'diff_rank_seed: the checkpoint holds rank 0\'s random state '
                'only, so random state is not restored on resume',
                logger='current',
                level=logging.WARNING)
            return
        set_random_state(state)


#: Message hub key of the random state after the latest optimiser step (not
#: prefixed 'train', which LogProcessor would log as a non-scalar).
RANDOM_STATE_KEY = 'semi_loop_random_state'


def get_random_state() -> dict:
    """Python, numpy, torch (and current CUDA device) random states."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_random_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'].cpu())


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Random state restored on exit (whatever the block draws)."""
    state = get_random_state()
    try:
        yield
    finally:
        set_random_state(state)


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
