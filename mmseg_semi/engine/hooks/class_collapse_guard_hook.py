"""Watch the pseudo-labels' classes; warn when one is vanishing."""
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ...utils.arg_checks import check_int, check_number


@HOOKS.register_module()
class ClassCollapseGuardHook(Hook):
    """Per-class pseudo-label shares next to the labeled shares, and a guard.

    Every ``interval`` iterations it reads the class-share monitors of the
    semi-supervised model (labeled ground-truth pixels, pseudo-labelled
    pixels, reliable ones, raw-to-final arg-max flips; see
    ``ClassShareMonitor``), sums them over ranks, and

    * appends one JSON line per teacher to ``<log_dir>/class_shares.jsonl``
      (``tools/analysis_tools/plot_curves.py`` plots it): the labeled share
      of each class (cumulative since the start), its share of the
      reliable pseudo-labels, its reliable ratio (reliable / pseudo-labelled
      pixels of the class) and the flip matrix of the window;
    * logs ``<teacher>/pl_min_share_ratio``, the smallest ratio of a class's
      pseudo-label share to its labeled share;
    * warns, naming the class and the iteration, when a class's pseudo-label
      share has stayed below ``min_share_ratio`` times its labeled share for
      ``patience`` consecutive windows, and again only after it recovered;
    * with ``pause_iters > 0``, pauses the unsupervised losses for that many
      iterations when it warns (supervised-only steps; the teachers keep
      averaging the student), so a collapsing class can recover before
      self-training resumes.

    Args:
        interval: Iterations per window (>= 1).
        min_share_ratio: Fraction of the labeled share under which a class
            counts as collapsing, in (0, 1].
        patience: Consecutive windows below it before warning (>= 1).
        pause_iters: Supervised-only iterations after a warning (0: only
            warn).
        out_file: File name under the run's log directory, or None.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 50,
                 min_share_ratio: float = 0.25,
                 patience: int = 2,
                 pause_iters: int = 0,
                 out_file: Optional[str] = 'class_shares.jsonl') -> None:
        for name, value, low in (('interval', interval, 1),
                                 ('patience', patience, 1),
                                 ('pause_iters', pause_iters, 0)):
            check_int(name, value, minimum=low)
        self.interval = interval
        self.min_share_ratio = float(
            check_number('min_share_ratio', min_share_ratio, 0, 1,
                         low_open=True))
        self.patience = patience
        self.pause_iters = pause_iters
        self.out_file = out_file
        self._labeled_totals: Dict[str, torch.Tensor] = {}
        self._streaks: Dict[str, torch.Tensor] = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        monitors = getattr(model, 'class_share_monitors', dict)()
        if not monitors:
            return
        iteration = runner.iter + 1
        classes = class_names(runner, next(iter(monitors.values())))
        warned = False
        for prefix, monitor in monitors.items():
            counts = monitor.read_and_reset()
            for value in counts.values():
                all_reduce(value, op='sum')  # no-op in one process
            counts = {key: value.cpu().double()
                      for key, value in counts.items()}
            record = self.check(prefix, counts, classes, iteration, runner)
            if record is None:
                continue
            warned |= record.pop('warned')
            runner.message_hub.update_scalar(
                f'train/{prefix}pl_min_share_ratio',
                record['min_share_ratio'])
            if self.out_file and runner.rank == 0:
                with open(osp.join(runner.log_dir, self.out_file), 'a') as f:
                    f.write(json.dumps(record) + '\n')
        if warned and self.pause_iters > 0:
            model.pause_unsup(iteration + self.pause_iters)
            runner.logger.warning(
                f'ClassCollapseGuardHook: unsupervised losses paused until '
                f'iteration {iteration + self.pause_iters}')

    def check(self, prefix: str, counts: Dict[str, torch.Tensor],
              classes: Sequence[str], iteration: int, runner) -> dict:
        """Update one teacher's totals and streaks; its JSON record, or None
        when the window had no pseudo-labels (warm-up, paused)."""
        labeled = self._labeled_totals.get(prefix)
        labeled = counts['labeled'] if labeled is None \
            else labeled + counts['labeled']
        self._labeled_totals[prefix] = labeled
        predicted, reliable = counts['predicted'], counts['reliable']
        if predicted.sum() == 0 or labeled.sum() == 0:
            return None
        labeled_share = labeled / labeled.sum()
        reliable_share = reliable / reliable.sum().clamp_min(1)
        share_ratio = reliable_share / labeled_share.clamp_min(1e-12)
        present = labeled_share > 0
        low = present & (share_ratio < self.min_share_ratio)
        streak = self._streaks.get(prefix, torch.zeros_like(labeled))
        streak = torch.where(low, streak + 1, torch.zeros_like(streak))
        self._streaks[prefix] = streak
        firing = (streak == self.patience).nonzero().flatten().tolist()
        for index in firing:
            runner.logger.warning(
                f'ClassCollapseGuardHook: {prefix}pseudo-labels are missing '
                f'class {classes[index]!r} (index {index}) at iteration '
                f'{iteration}: its share of the reliable pseudo-labels is '
                f'{reliable_share[index]:.4f}, below {self.min_share_ratio} '
                f'x its labeled share {labeled_share[index]:.4f}, for '
                f'{self.patience} windows of {self.interval} iterations '
                '(early in training: a class the teacher has not learned '
                'yet; later: a collapse)')
        return dict(
            iter=iteration,
            teacher=prefix.rstrip('/'),
            classes=list(classes),
            labeled_share=rounded(labeled_share),
            predicted_share=rounded(predicted / predicted.sum()),
            pseudo_label_share=rounded(reliable_share),
            reliable_ratio=rounded(reliable / predicted.clamp_min(1)),
            flips=[rounded(row) for row in counts['flips']],
            min_share_ratio=float(share_ratio[present].min()),
            collapsing=[classes[i] for i in low.nonzero().flatten().tolist()],
            warned=bool(firing))


def class_names(runner, monitor) -> List[str]:
    """The training dataset's class names, or their indices."""
    try:
        dataset = runner.train_dataloader.dataset
        names = list(dataset.metainfo['classes'])
    except (AttributeError, KeyError, TypeError):
        names = []
    if len(names) != monitor.num_classes:
        names = [str(i) for i in range(monitor.num_classes)]
    return names


def rounded(values: torch.Tensor, digits: int = 6) -> List[float]:
    return [round(float(v), digits) for v in values]
