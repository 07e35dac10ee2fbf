"""Where a U2PL training step spends the time the mean teacher does not.

Builds a U2PL config (a ``MeanTeacherSegmentor`` with ``rep_head`` and
``contrastive_loss``), takes one real training batch, and times on that
batch, as the median of ``--repeat`` runs after ``--warmup``:

* the mean-teacher step (forward and backward) of the same model with the
  contrastive term switched off, and the U2PL step (forward and backward),
  alternated step by step so that a drift of the machine's speed affects
  both alike;
* the parts of U2PL's contrastive term: the teacher's forward on the labeled
  crops, the representation heads (forwards only; their backward is in the
  step), the memory bank's push and negative sampling, and the whole loss.

It also counts the minor page faults of each part: on Linux, glibc serves
blocks of 32 MB and more with fresh ``mmap`` pages on every allocation, and
each first touch of a page is a fault, which virtual machines make costly.

A randomly initialised teacher gives no pixel ``p(c) > delta_p``, so U2PL
has no anchors; ``--checkpoint`` loads a trained model (any checkpoint of
the config) for the realistic case.

Example:
    MMSEG_SEMI_CAMVID_ROOT=../shared/data/camvid \\
    python tools/benchmark/bench_u2pl_step_breakdown.py \\
        configs/u2pl/u2pl_*_camvid-1-8-256x320.py \\
        --checkpoint work_dirs/u2pl/iter_1000.pth
"""
import argparse
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Dict, List

#: (label, module path, attribute) of the timed parts of the U2PL term.
TIMED_FUNCTIONS = (
    ('teacher forward, labeled crops', None, 'pair.teacher_on_labeled'),
    ('contrastive loss (all of it)', None, 'contrastive_loss.forward'),
    ('memory bank push', None, 'contrastive_loss.memory_bank.push'),
    ('memory bank sample_negatives', None,
     'contrastive_loss.memory_bank.sample_negatives'),
    ('teacher representation heads', None, 'teacher_rep_head.forward'),
    ('student representation head (forward)', None,
     'student_rep_head.forward'),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a U2PL config')
    parser.add_argument('--checkpoint', help='trained weights to load')
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    return parser.parse_args(argv)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class PartTimer:
    """Wall time and page faults of wrapped callables, per call."""

    def __init__(self):
        self.seconds: Dict[str, List[float]] = defaultdict(list)
        self.faults: Dict[str, List[int]] = defaultdict(list)

    def wrap(self, label: str, function: Callable) -> Callable:

        def timed(*args, **kwargs):
            faults, start = minor_faults(), time.perf_counter()
            result = function(*args, **kwargs)
            self.seconds[label].append(time.perf_counter() - start)
            self.faults[label].append(minor_faults() - faults)
            return result

        return timed

    def clear(self) -> None:
        self.seconds.clear()
        self.faults.clear()


def resolve_owner(model, module_path, attribute: str):
    """The object holding ``attribute`` (dotted from the model when
    ``module_path`` is None) and the attribute's last name."""
    import importlib
    *owner_path, name = attribute.split('.')
    owner = importlib.import_module(module_path) if module_path else model
    for part in owner_path:
        # ``pair``: the mean teacher's TeacherStudent (not a module).
        owner = owner.pairs[0] if part == 'pair' else getattr(owner, part)
    return owner, name


@contextmanager
def patched_parts(model, timer: PartTimer):
    """Wrap every part of :data:`TIMED_FUNCTIONS` while inside."""
    restore = []
    for label, module_path, attribute in TIMED_FUNCTIONS:
        owner, name = resolve_owner(model, module_path, attribute)
        original = getattr(owner, name)
        restore.append((owner, name, original, name in vars(owner)))
        setattr(owner, name, timer.wrap(label, original))
    try:
        yield
    finally:
        for owner, name, original, was_own in reversed(restore):
            if was_own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # back to the class's method


@contextmanager
def contrastive_off(model):
    """The same model as a plain mean teacher (no U2PL term)."""
    pair = model.pairs[0]
    loss = pair.contrastive_loss
    pair.contrastive_loss = None
    try:
        yield
    finally:
        pair.contrastive_loss = loss


def alternated_medians(steps: List[Callable[[], None]], repeat: int,
                       warmup: int) -> List[float]:
    """Median seconds of each step, the steps run in turn ``warmup +
    repeat`` times (the first ``warmup`` rounds are not timed)."""
    times: List[List[float]] = [[] for _ in steps]
    for index in range(warmup + repeat):
        for step, step_times in zip(steps, times):
            start = time.perf_counter()
            step()
            if index >= warmup:
                step_times.append(time.perf_counter() - start)
    return [statistics.median(step_times) for step_times in times]


def build(config: str, checkpoint):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmseg_semi  # noqa: F401
    from mmseg_semi.utils import adapt_config_to_device

    cfg = Config.fromfile(config)
    if not cfg.model.get('contrastive_loss'):
        raise SystemExit(f'{config} has no model.contrastive_loss: not a '
                         'U2PL config')
    cfg.work_dir = tempfile.mkdtemp(prefix='bench_u2pl_')
    cfg.model.unsup_start_iter = 0
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(adapt_config_to_device(cfg))
    if checkpoint:
        runner.load_checkpoint(checkpoint)
    loop = runner.train_loop
    batch = dict(labeled=next(loop.dataloader_iterator),
                 unlabeled=next(loop.unlabeled_iterator))
    model = runner.model
    model.train()
    model.set_train_progress(loop.max_iters // 2, loop.max_iters)
    return model, model.data_preprocessor(batch, True)


def main(argv=None):
    args = parse_args(argv)
    import torch
    model, data = build(args.config, args.checkpoint)

    def step():
        model.zero_grad(set_to_none=True)
        losses = model.loss(data['inputs'], data['data_samples'])
        loss, _ = model.parse_losses(losses)
        loss.backward()

    def mean_teacher_step():
        with contrastive_off(model):
            step()

    mean_teacher, u2pl = alternated_medians([mean_teacher_step, step],
                                            args.repeat, args.warmup)
    timer = PartTimer()
    with patched_parts(model, timer):
        for index in range(args.warmup + args.repeat):
            if index == args.warmup:
                timer.clear()
            step()
    print(f'\n{args.config}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, median of {args.repeat}\n')
    print('| part | ms per step | minor page faults per step |')
    print('|---|---|---|')
    print(f'| mean-teacher step (same model, no contrastive term) | '
          f'{1000 * mean_teacher:.0f} | |')
    print(f'| U2PL step | {1000 * u2pl:.0f} '
          f'({100 * (u2pl / mean_teacher - 1):+.0f}%) | |')
    for label, _, _ in TIMED_FUNCTIONS:
        calls = len(timer.seconds[label]) // args.repeat
        if calls == 0:
            print(f'| {label} (not called) | - | - |')
            continue
        seconds = [sum(timer.seconds[label][i:i + calls])
                   for i in range(0, len(timer.seconds[label]), calls)]
        faults = [sum(timer.faults[label][i:i + calls])
                  for i in range(0, len(timer.faults[label]), calls)]
        print(f'| {label} ({calls} call(s)) | '
              f'{1000 * statistics.median(seconds):.0f} | '
              f'{statistics.median(faults):.0f} |')


if __name__ == '__main__':
    main()
