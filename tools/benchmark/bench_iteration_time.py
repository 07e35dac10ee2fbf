"""Time per training iteration and peak memory of several configs.

Each config is trained for ``--warmup + --iters`` iterations on its real
data (no validation, no checkpoints, the unsupervised losses active from the
first iteration) in a fresh subprocess, so peak memory is per config. The
median of mmengine's per-iteration ``time`` after the warm-up is reported,
with peak RSS (CPU) or peak allocated CUDA memory, as a markdown table.

On a shared or virtual machine the speed drifts over minutes, so one run of
each config can put the drift into the comparison. ``--rounds K`` runs the
configs in turn K times (A, B, A, B, ...) and reports, per config, the
median over rounds of its per-round median, and the median over rounds of
its ratio to the first config of the same round (neighbouring runs share the
machine's state, so the ratio is steadier than either time).

Example (U2PL vs mean teacher on CamVid, same machine):
    python tools/benchmark/bench_iteration_time.py \\
        configs/mean_teacher/*effnetlite0*camvid-1-8-256x320.py \\
        configs/u2pl/*effnetlite0*camvid-1-8-256x320.py --rounds 3
"""
import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from typing import List


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument(
        '--rounds', type=int, default=1,
        help='run the configs in turn this many times (default 1)')
    parser.add_argument(
        '--single', action='store_true', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(config: str, iters: int, warmup: int) -> dict:
    """Train ``config`` briefly in this process; return timing and memory."""
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmseg_semi  # noqa: F401
    from mmseg_semi.utils import adapt_config_to_device

    cfg = Config.fromfile(config)
    total = warmup + iters
    cfg.work_dir = tempfile.mkdtemp(prefix='bench_iter_')
    cfg.train_cfg.max_iters = total
    cfg.train_cfg.val_interval = total + 1
    cfg.default_hooks.checkpoint.interval = total + 1
    cfg.default_hooks.checkpoint.pop('save_best', None)
    cfg.default_hooks.logger.interval = 1
    if 'unsup_start_iter' in cfg.model:
        cfg.model.unsup_start_iter = 0
    cfg.log_level = 'WARNING'
    cfg = adapt_config_to_device(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    times = runner.message_hub.get_scalar('train/time').data[0].tolist()
    steady = times[warmup:]
    result = dict(
        config=config,
        median_s=statistics.median(steady),
        mean_s=statistics.fmean(steady),
        iters=len(steady),
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
        1024)
    if torch.cuda.is_available():
        result['peak_cuda_mib'] = torch.cuda.max_memory_allocated() / 2**20
    return result


def hardware() -> str:
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    return f'{cpu}, {torch.get_num_threads()} threads'


def main(argv=None):
    args = parse_args(argv)
    if args.single:
        print('RESULT ' + json.dumps(
            measure(args.configs[0], args.iters, args.warmup)))
        return
    if args.rounds < 1:
        raise SystemExit(f'--rounds must be >= 1, got {args.rounds}')
    rounds = [[run_single(config, args.iters, args.warmup)
               for config in args.configs] for _ in range(args.rounds)]
    import torch
    print(f'\n{datetime.date.today()}, {hardware()}, torch {torch.__version__}'
          f', {args.iters} iterations after {args.warmup} warm-up, '
          f'{args.rounds} round(s)\n')
    print(rounds_table(rounds))


def run_single(config: str, iters: int, warmup: int) -> dict:
    """:func:`measure` in a fresh interpreter (own peak memory)."""
    out = subprocess.run(
        [
            sys.executable, __file__, config, '--single', '--iters',
            str(iters), '--warmup',
            str(warmup)
        ],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy()).stdout
    line = [x for x in out.splitlines() if x.startswith('RESULT ')][-1]
    return json.loads(line[len('RESULT '):])


def rounds_table(rounds: List[List[dict]]) -> str:
    """Markdown table of :func:`measure` results, ``rounds[k][i]`` being
    config ``i`` in round ``k``.

    ``median s/iter`` is the median over rounds of each round's median,
    ``vs first`` the median over rounds of the ratio to config 0 of the
    same round, ``per round`` lists each round's median, and peak memory
    is the largest over rounds.
    """
    lines = ['| config | median s/iter | vs first | per round | peak memory |',
             '|---|---|---|---|---|']
    for index, first in enumerate(rounds[0]):
        medians = [run[index]['median_s'] for run in rounds]
        ratios = [run[index]['median_s'] / run[0]['median_s']
                  for run in rounds]
        key, unit = (('peak_cuda_mib', 'CUDA') if 'peak_cuda_mib' in first
                     else ('peak_rss_mib', 'RSS'))
        memory = f'{max(run[index][key] for run in rounds):.0f} MiB {unit}'
        per_round = ', '.join(f'{value:.3f}' for value in medians)
        lines.append(
            f"| {os.path.basename(first['config'])} | "
            f'{statistics.median(medians):.3f} | '
            f'{100 * (statistics.median(ratios) - 1):+.1f}% | {per_round} | '
            f'{memory} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
