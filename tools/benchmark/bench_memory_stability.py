"""Does process memory stay flat over a long semi-supervised run?

Trains each config (by default U2PL and RML on CamVid 1/8) in a fresh
subprocess, in-process there with mmengine's runner, for ``--iters``
iterations (no validation, no checkpoints, unsupervised losses from the
first iteration). A hook samples the resident set size (RSS) every
``--interval`` iterations: the training process's own (psutil if installed,
else ``/proc/self/statm``) and, separately, that of its data-loader worker
processes. Per config it writes ``<out-dir>/<config name>.csv``
(iteration, seconds, RSS, workers' RSS) and prints the RSS at the start,
middle and end and the least-squares slope of RSS against iteration after
``--warmup`` iterations, in MiB per 100 iterations. The verdict is "flat"
when that slope is at most ``--threshold`` and "growing" otherwise; the
exit status is 1 when any config grows.

Example (the full check; a few hours on 2 CPU cores):
    python tools/benchmark/bench_memory_stability.py --iters 500

Quick look with small crops:
    python tools/benchmark/bench_memory_stability.py --iters 200 --crop 128
"""
import argparse
import csv
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIGS = [
    osp.join(REPO_ROOT, 'configs', 'u2pl',
             'u2pl_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-'
             '256x320.py'),
    osp.join(REPO_ROOT, 'configs', 'rml',
             'rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-'
             '256x320.py'),
]
MIB = 2**20
CSV_FIELDS = ('iteration', 'seconds', 'rss_mib', 'workers_rss_mib')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'configs', nargs='*', default=DEFAULT_CONFIGS,
        help='configs to run (default: U2PL and RML, CamVid 1/8)')
    parser.add_argument('--iters', type=int, default=300,
                        help='training iterations per config')
    parser.add_argument('--interval', type=int, default=10,
                        help='sample RSS every N iterations')
    parser.add_argument(
        '--warmup', type=int, default=None,
        help='iterations left out of the slope (allocator and caches '
        'settle); default: a fifth of --iters')
    parser.add_argument(
        '--threshold', type=float, default=5.0,
        help='largest slope, in MiB per 100 iterations, still called flat')
    parser.add_argument(
        '--crop', type=int, nargs='+', default=None, metavar='SIZE',
        help='training crop: SIZE or HEIGHT WIDTH (smaller is faster)')
    parser.add_argument(
        '--num-workers', type=int, default=None,
        help='data-loader workers (default: as in the config)')
    parser.add_argument(
        '--out-dir', default=osp.join('work_dirs', 'memory_stability'),
        help='where the CSV files go')
    parser.add_argument('--single', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iters < 2 or args.interval < 1:
        parser.error('--iters must be >= 2 and --interval >= 1')
    if args.crop is not None and len(args.crop) not in (1, 2):
        parser.error('--crop takes SIZE or HEIGHT WIDTH')
    if args.warmup is None:
        args.warmup = args.iters // 5
    if not 0 <= args.warmup < args.iters:
        parser.error(f'--warmup must be in [0, --iters), got {args.warmup}')
    return args


# ------------------------------------------------------------ measuring
def process_rss_bytes(pid: Optional[int] = None) -> int:
    """Resident set size of a process (this one by default)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss
    # statm: size resident shared ... in pages.
    with open(f"/proc/{pid or 'self'}/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf('SC_PAGE_SIZE')


def child_pids() -> List[int]:
    """Direct children of this process (data-loader workers)."""
    try:
        import psutil
        return [child.pid for child in psutil.Process().children()]
    except ImportError:
        pass
    pids = []
    task_dir = '/proc/self/task'
    for task in os.listdir(task_dir):
        try:
            with open(osp.join(task_dir, task, 'children')) as f:
                pids += [int(pid) for pid in f.read().split()]
        except OSError:
            continue  # a thread that just ended, or no such file
    return pids


def workers_rss_bytes() -> int:
    total = 0
    for pid in child_pids():
        try:
            total += process_rss_bytes(pid)
        except (OSError, ProcessLookupError):
            continue  # a worker that just exited
        except Exception as error:  # psutil.NoSuchProcess and friends
            if type(error).__name__ not in ('NoSuchProcess', 'ZombieProcess',
                                            'AccessDenied'):
                raise
    return total


def slope_per_100(points: Sequence[Tuple[float, float]]) -> float:
    """Least-squares slope of y against x, times 100 (MiB/100 iters)."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points)
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x)**2 for x in xs)
    if spread == 0:
        return 0.0
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    return 100.0 * covariance / spread


def verdict(slope: float, threshold: float) -> str:
    return 'growing' if slope > threshold else 'flat'


def make_rss_hook(interval: int, total: int, label: str, rows: list):
    """An mmengine hook that records RSS every ``interval`` iterations and
    prints a progress line for each sample."""
    from mmengine.hooks import Hook

    class RSSSamplingHook(Hook):
        priority = 'LOWEST'  # after the optimiser step and the EMA update

        def before_train(self, runner) -> None:
            self.start = time.perf_counter()
            self.record(0)

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None) -> None:
            done = runner.iter + 1
            if done % interval == 0 or done == total:
                self.record(done)

        def record(self, done: int) -> None:
            rss = process_rss_bytes() / MIB
            row = dict(
                iteration=done,
                seconds=round(time.perf_counter() - self.start, 3),
                rss_mib=round(rss, 2),
                workers_rss_mib=round(workers_rss_bytes() / MIB, 2))
            rows.append(row)
            change = rss - rows[0]['rss_mib']
            rate = row['seconds'] / done if done else 0.0
            print(f'[{label}] iter {done:>6}/{total}  RSS {rss:9.1f} MiB '
                  f'({change:+8.1f})  workers {row["workers_rss_mib"]:8.1f} '
                  f'MiB  {rate:.2f} s/iter', flush=True)

    return RSSSamplingHook()


def set_crop(node, crop: Tuple[int, int]) -> int:
    """Set ``crop_size`` of every RandomCrop in a (nested) pipeline."""
    changed = 0
    if isinstance(node, dict):
        if node.get('type') == 'RandomCrop':
            node['crop_size'] = crop
            changed += 1
        for value in node.values():
            changed += set_crop(value, crop)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += set_crop(value, crop)
    return changed


def run_one(args, config: str) -> dict:
    """Train ``config`` in this process, sampling RSS; write the CSV."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmseg_semi  # noqa: F401
    from mmseg_semi.utils import adapt_config_to_device

    cfg = Config.fromfile(config)
    name = osp.splitext(osp.basename(config))[0]
    cfg.work_dir = osp.join(args.out_dir, name)
    total = args.iters
    cfg.train_cfg.max_iters = total
    cfg.train_cfg.val_interval = total + 1
    cfg.default_hooks.checkpoint.interval = total + 1
    cfg.default_hooks.checkpoint.pop('save_best', None)
    cfg.default_hooks.logger.interval = max(args.interval, 10)
    if 'unsup_start_iter' in cfg.model:
        cfg.model.unsup_start_iter = 0
    loaders = [cfg.train_dataloader]
    if 'unlabeled_dataloader' in cfg.train_cfg:
        loaders.append(cfg.train_cfg.unlabeled_dataloader)
    if args.crop is not None:
        crop = tuple(args.crop) * (2 // len(args.crop))
        if not sum(set_crop(loader.dataset.pipeline, crop)
                   for loader in loaders):
            raise ValueError(f'{config}: --crop given but the training '
                             'pipelines have no RandomCrop')
    if args.num_workers is not None:
        for loader in loaders:
            loader.num_workers = args.num_workers
            loader.persistent_workers = args.num_workers > 0
    cfg.log_level = 'WARNING'
    cfg = adapt_config_to_device(cfg)
    rows: list = []
    runner = Runner.from_cfg(cfg)
    runner.register_hook(make_rss_hook(args.interval, total, name, rows))
    runner.train()

    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = osp.join(args.out_dir, f'{name}.csv')
    with open(csv_path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return summarise(rows, args, config, csv_path)


def summarise(rows: List[dict], args, config: str, csv_path: str) -> dict:
    steady = [(r['iteration'], r['rss_mib']) for r in rows
              if r['iteration'] >= args.warmup]
    workers = [(r['iteration'], r['workers_rss_mib']) for r in rows
               if r['iteration'] >= args.warmup]
    slope = slope_per_100(steady)
    return dict(
        config=config,
        csv=csv_path,
        iters=args.iters,
        warmup=args.warmup,
        start_mib=rows[0]['rss_mib'],
        middle_mib=rows[len(rows) // 2]['rss_mib'],
        end_mib=rows[-1]['rss_mib'],
        slope_mib_per_100=round(slope, 3),
        workers_slope_mib_per_100=round(slope_per_100(workers), 3),
        samples_in_slope=len(steady),
        verdict=verdict(slope, args.threshold))


# ------------------------------------------------------------ reporting
def print_report(results: List[dict], threshold: float) -> None:
    print(f'\nRSS over training; slope after warm-up, "flat" if at most '
          f'{threshold} MiB/100 iterations\n')
    print('| config | iters (warm-up) | RSS start / middle / end MiB | '
          'slope MiB/100 it | workers slope | verdict |')
    print('|---|---|---|---|---|---|')
    for r in results:
        print(f"| {osp.basename(r['config'])} | {r['iters']} "
              f"({r['warmup']}) | {r['start_mib']:.0f} / "
              f"{r['middle_mib']:.0f} / {r['end_mib']:.0f} | "
              f"{r['slope_mib_per_100']:+.2f} | "
              f"{r['workers_slope_mib_per_100']:+.2f} | "
              f"**{r['verdict']}** |")
    print('\nCSV: ' + ', '.join(r['csv'] for r in results))


def child_argv(args, config: str) -> List[str]:
    argv = [sys.executable, osp.abspath(__file__), config, '--single',
            '--iters', str(args.iters), '--interval', str(args.interval),
            '--warmup', str(args.warmup), '--threshold', str(args.threshold),
            '--out-dir', args.out_dir]
    if args.crop is not None:
        argv += ['--crop'] + [str(c) for c in args.crop]
    if args.num_workers is not None:
        argv += ['--num-workers', str(args.num_workers)]
    return argv


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.single:
        print('RESULT ' + json.dumps(run_one(args, args.configs[0])),
              flush=True)
        return 0
    results = []
    for config in args.configs:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config {config!r} does not exist')
        # A fresh process per config: RSS never shrinks back, so a second
        # config in the same process would start from the first one's peak.
        # Progress lines stream through; the summary is the RESULT line.
        process = subprocess.Popen(
            child_argv(args, config), stdout=subprocess.PIPE, text=True,
            env=os.environ.copy())
        result = None
        for line in process.stdout:
            if line.startswith('RESULT '):
                result = json.loads(line[len('RESULT '):])
            else:
                print(line, end='', flush=True)
        if process.wait() != 0 or result is None:
            raise RuntimeError(f'{config}: the measuring process failed '
                               f'(exit status {process.returncode})')
        results.append(result)
    print_report(results, args.threshold)
    return int(any(r['verdict'] == 'growing' for r in results))


if __name__ == '__main__':
    sys.exit(main())
