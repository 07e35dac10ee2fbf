"""Collect the benchmark's test mIoU into a markdown table and a chart.

A benchmark directory holds one work dir per run, ``<method>_<split>``
(``sup``, ``mt``, ``u2pl``, ``rml`` x CamVid ``1-8``, ``1-4`` and CCP
``ccp-1-8``), and for repeated
runs of the same config ``<method>_<split>_run<k>`` (k = 2, 3, ...), each
written by ``tools/benchmark/train_and_test.sh``: training logs under
``<timestamp>/<timestamp>.log`` and the test metrics that mmengine saved
under ``test/<timestamp>/<timestamp>.json``. Runs not (yet) finished are
listed as missing, so the summary can be written at any time.

Writes ``results.md`` (method x split, for the splits that have runs: mean
+- standard deviation of the test mIoU over the finished runs, difference to
the supervised-only mean of the same split, mean training wall time, each
run's test mIoU, and the classes whose test IoU fell below half of their
supervised-only mean in some run, read from the per-class table of the test
log) and ``results.png`` (grouped bar chart of the mean test mIoU).

Example:
    python tools/benchmark/summarize_camvid_benchmark.py work_dirs/bench \
        --out-dir /tmp/bench_summary
"""
import argparse
import json
import math
import os
import os.path as osp
import re
from datetime import datetime
from typing import Dict, List, Optional, Sequence, Tuple

#: (run-name prefix, display name), in table order; 'sup' is the baseline.
METHODS = (('sup', 'supervised only'), ('mt', 'mean teacher'),
           ('u2pl', 'U2PL'), ('rml', 'RML'))
#: configs/composition/ runs, listed only when a work dir has results.
COMPOSITION_METHODS = (('rml-u2pl', 'RML + U2PL contrastive head'),
                       ('u2pl-rect', 'U2PL + prototype rectifier'),
                       ('mt-segformer', 'mean teacher, SegFormer MiT-B0'),
                       ('mt-pspnet', 'mean teacher, mmseg PSPNet-R18'))
#: Split names as in the run names (labeled fraction; CCP's prefixed) and
#: their display names.
SPLITS = ('1-8', '1-4', 'ccp-1-8')
SPLIT_NAMES = {'1-8': 'CamVid 1/8', '1-4': 'CamVid 1/4', 'ccp-1-8': 'CCP 1/8'}
BASELINE = 'sup'

_RUN_DIR = re.compile(r'^\d{8}_\d{6}$')
_REPEAT_SUFFIX = re.compile(r'^_run(\d+)$')
_LOG_TIME = re.compile(r'^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) - mmengine')
_TRAIN_ITER = re.compile(r'Iter\(train\) \[\s*(\d+)/')
_RESUMED = re.compile(r'resumed epoch: \d+, iter: (\d+)')
_LOG_TIME_FORMAT = '%Y/%m/%d %H:%M:%S'
#: A row of mmseg's per-class table: | name | IoU | Acc |.
_CLASS_ROW = re.compile(r'^\|\s*(\S[^|]*?)\s*\|\s*([\d.]+|nan)\s*\|'
                        r'\s*([\d.]+|nan)\s*\|\s*$')


def timestamp_dirs(path: str) -> List[str]:
    """``<YYYYMMDD_HHMMSS>`` sub-directories mmengine made, oldest first."""
    if not osp.isdir(path):
        return []
    return [
        osp.join(path, name) for name in sorted(os.listdir(path))
        if _RUN_DIR.match(name) and osp.isdir(osp.join(path, name))
    ]


def read_test_miou(work_dir: str) -> Optional[float]:
    """mIoU of the newest test run under ``work_dir/test``, or None.

    mmengine's runner writes the test metrics as one JSON record to
    ``test/<timestamp>/<timestamp>.json``.
    """
    for run in reversed(timestamp_dirs(osp.join(work_dir, 'test'))):
        metrics_file = osp.join(run, osp.basename(run) + '.json')
        if not osp.isfile(metrics_file):
            continue
        with open(metrics_file) as file:
            text = file.read().strip()
        if not text:
            continue
        try:
            metrics = json.loads(text.splitlines()[-1])
        except json.JSONDecodeError as error:
            raise ValueError(
                f'{metrics_file} is not a JSON record: {error}') from None
        if 'mIoU' not in metrics:
            raise KeyError(f'{metrics_file} has no "mIoU" (keys: '
                           f'{sorted(metrics)})')
        return float(metrics['mIoU'])
    return None


def read_class_ious(work_dir: str) -> Optional[Dict[str, float]]:
    """Per-class test IoU of the newest test run (mmseg's "per class
    results" table in ``test/<timestamp>/<timestamp>.log``), or None."""
    for run in reversed(timestamp_dirs(osp.join(work_dir, 'test'))):
        log_file = osp.join(run, osp.basename(run) + '.log')
        if not osp.isfile(log_file):
            continue
        ious: Dict[str, float] = {}
        with open(log_file, errors='replace') as file:
            for line in file:
                match = _CLASS_ROW.match(line.strip())
                if match and match.group(1) != 'Class':
                    ious[match.group(1)] = float(match.group(2))
        if ious:
            return ious
    return None


def log_span_seconds(log_file: str,
                     until_iter: Optional[int] = None) -> Optional[float]:
    """Seconds from the first to the last time-stamped line of a log.

    With ``until_iter`` the span ends before the first training line past
    that iteration: a run resumed from an earlier checkpoint than where it
    stopped repeats those iterations, which must not count twice.
    """
    first = last = None
    with open(log_file, errors='replace') as file:
        for line in file:
            match = _LOG_TIME.match(line)
            if not match:
                continue
            if until_iter is not None:
                train_iter = _TRAIN_ITER.search(line)
                if train_iter and int(train_iter.group(1)) > until_iter:
                    break
            stamp = datetime.strptime(match.group(1), _LOG_TIME_FORMAT)
            first = first or stamp
            last = stamp
    if first is None:
        return None
    return (last - first).total_seconds()


def resumed_iteration(log_file: str) -> Optional[int]:
    """The iteration a ``--resume`` run started from (mmengine logs
    ``resumed epoch: E, iter: I``), or None for a fresh start."""
    with open(log_file, errors='replace') as file:
        for line in file:
            match = _RESUMED.search(line)
            if match:
                return int(match.group(1))
    return None


def read_train_seconds(work_dir: str) -> Optional[float]:
    """Training wall time: the summed span of every training log.

    Each start (and ``--resume``) of ``tools/train.py`` writes its own
    ``<timestamp>/<timestamp>.log``; their spans include the validation
    runs during training but not the final test. A log followed by a run
    resumed from iteration ``I`` counts up to its last line before training
    went past ``I`` (the iterations after the checkpoint were redone).
    """
    log_files = [
        osp.join(run, osp.basename(run) + '.log')
        for run in timestamp_dirs(work_dir)
    ]
    log_files = [path for path in log_files if osp.isfile(path)]
    total, found = 0.0, False
    for index, log_file in enumerate(log_files):
        next_start = (
            resumed_iteration(log_files[index + 1])
            if index + 1 < len(log_files) else None)
        seconds = log_span_seconds(log_file, until_iter=next_start)
        if seconds is not None:
            total += seconds
            found = True
    return total if found else None


def repeat_work_dirs(bench_dir: str, method: str, split: str) -> List[str]:
    """Work dirs of every run of one method and split, in run order.

    ``<method>_<split>`` is run 1 and ``<method>_<split>_run<k>`` run k;
    other suffixes (e.g. ``rml_1-8_paper-noise``, a different config) are
    not repeats and are left out.
    """
    prefix = f'{method}_{split}'
    runs = []
    for name in os.listdir(bench_dir):
        if name == prefix:
            runs.append((1, name))
        elif name.startswith(prefix):
            match = _REPEAT_SUFFIX.match(name[len(prefix):])
            if match:
                runs.append((int(match.group(1)), name))
    return [osp.join(bench_dir, name) for _, name in sorted(runs)]


def mean_or_none(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def std_or_none(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation (n - 1); None for fewer than 2 values."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(
        sum((v - mean)**2 for v in values) / (len(values) - 1))


def collect_results(bench_dir: str,
                    methods: Sequence[Tuple[str, str]] = METHODS,
                    splits: Sequence[str] = SPLITS
                    ) -> Dict[Tuple[str, str], dict]:
    """``{(method, split): dict(miou=, std=, train_seconds=, run_mious=,
    run_class_ious=)}``.

    ``miou`` is the mean over the runs with test results, ``std`` their
    sample standard deviation (None for one run), and
    ``train_seconds`` the mean training time of those runs (of the runs with
    training logs while none is tested); None when there is nothing to
    average. ``run_mious`` lists each tested run's mIoU in run order and
    ``run_class_ious`` each tested run's per-class IoU (runs whose test log
    has the table).
    """
    if not osp.isdir(bench_dir):
        raise FileNotFoundError(
            f'benchmark directory {bench_dir} does not exist')
    results = {}
    for method, _ in methods:
        for split in splits:
            work_dirs = repeat_work_dirs(bench_dir, method, split)
            mious = [read_test_miou(work_dir) for work_dir in work_dirs]
            class_ious = [
                read_class_ious(work_dir)
                for work_dir, miou in zip(work_dirs, mious)
                if miou is not None
            ]
            seconds = [read_train_seconds(work_dir) for work_dir in work_dirs]
            run_mious = [miou for miou in mious if miou is not None]
            # Time of the finished runs only (a run still training would
            # pull the mean down); of any run while none has finished.
            finished = [value for value, miou in zip(seconds, mious)
                        if value is not None and miou is not None]
            results[(method, split)] = dict(
                miou=mean_or_none(run_mious),
                std=std_or_none(run_mious),
                run_class_ious=[c for c in class_ious if c],
                train_seconds=mean_or_none(finished or [
                    value for value in seconds if value is not None]),
                run_mious=run_mious)
    return results


def format_number(value: Optional[float], signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:+.2f}' if signed else f'{value:.2f}'


def format_minutes(seconds: Optional[float]) -> str:
    return '-' if seconds is None else f'{seconds / 60:.1f} min'


def collapsed_classes(row: dict, baseline_row: dict) -> str:
    """Classes whose test IoU fell below half of their supervised-only mean
    in some run of ``row``, with how many runs: 'bag (2/3), hair (1/3)'."""
    runs = row.get('run_class_ious') or []
    base_runs = baseline_row.get('run_class_ious') or []
    if not runs or not base_runs:
        return '-'
    below = {}
    for name in base_runs[0]:
        base = mean_or_none([r[name] for r in base_runs if name in r])
        if not base or math.isnan(base):
            continue
        hits = sum(1 for r in runs if r.get(name, base) < 0.5 * base)
        if hits:
            below[name] = hits
    if not below:
        return 'none'
    return ', '.join(f'{name} ({hits}/{len(runs)})'
                     for name, hits in below.items())


def results_table(results: Dict[Tuple[str, str], dict],
                  methods: Sequence[Tuple[str, str]] = METHODS,
                  splits: Sequence[str] = SPLITS,
                  baseline: str = BASELINE) -> str:
    """Markdown table, one row per method and split.

    ``test mIoU`` is the mean (+- sample standard deviation with two or
    more runs) over the finished runs and ``delta vs supervised`` the
    difference of the method's and the baseline's means on the same split
    ('-' when either is missing); ``test mIoU per run`` shows every run;
    ``classes below half of supervised`` names the classes that collapsed
    in some run.
    """
    lines = [
        '| method | data, split | test mIoU | delta vs supervised | '
        'training wall time | test mIoU per run | '
        'classes below half of supervised |',
        '|---|---|---|---|---|---|---|'
    ]
    for method, name in methods:
        for split in splits:
            row = results.get((method, split), {})
            miou = row.get('miou')
            base_row = results.get((baseline, split), {})
            base = base_row.get('miou')
            delta = None if miou is None or base is None \
                or method == baseline else miou - base
            per_run = ', '.join(
                format_number(value) for value in row.get('run_mious', ()))
            mean = format_number(miou)
            if row.get('std') is not None:
                mean += f' +- {row["std"]:.2f}'
            collapsed = '-' if method == baseline \
                else collapsed_classes(row, base_row)
            lines.append(f'| {name} | {SPLIT_NAMES.get(split, split)} | '
                         f'{mean} | '
                         f'{format_number(delta, signed=True)} | '
                         f'{format_minutes(row.get("train_seconds"))} | '
                         f'{per_run or "-"} | {collapsed} |')
    return '\n'.join(lines) + '\n'


def plot_results(results: Dict[Tuple[str, str], dict],
                 out_file: str,
                 methods: Sequence[Tuple[str, str]] = METHODS,
                 splits: Sequence[str] = SPLITS) -> None:
    """Grouped bar chart: one group per split, one bar per method."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    width = 0.8 / len(methods)
    for index, (method, name) in enumerate(methods):
        values = [results.get((method, split), {}).get('miou')
                  for split in splits]
        xs = [s + (index - (len(methods) - 1) / 2) * width
              for s in range(len(splits))]
        bars = axis.bar(xs, [v if v is not None else 0 for v in values],
                        width, label=name)
        for bar, value in zip(bars, values):
            axis.annotate(
                format_number(value) if value is not None else 'not run',
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha='center', va='bottom', fontsize='x-small')
    axis.set_xticks(range(len(splits)))
    axis.set_xticklabels([SPLIT_NAMES.get(s, s) for s in splits])
    axis.set_ylabel('test mIoU (mean over runs)')
    axis.legend(fontsize='small', loc='lower center',
                bbox_to_anchor=(0.5, 1.0), ncol=len(methods))
    axis.grid(axis='y', alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_file)
    plt.close(figure)


def summarize(bench_dir: str, out_dir: str) -> Tuple[str, str]:
    """Write ``results.md`` and ``results.png`` for a benchmark dir."""
    results = collect_results(bench_dir)
    compositions = collect_results(bench_dir, COMPOSITION_METHODS)
    methods = list(METHODS) + [
        (method, name) for method, name in COMPOSITION_METHODS
        if any(compositions[(method, split)]['miou'] is not None
               for split in SPLITS)
    ]
    results.update(compositions)
    # Only the splits that have at least one finished run.
    splits = [
        split for split in SPLITS
        if any(results[(method, split)]['miou'] is not None
               for method, _ in methods)
    ]
    if not splits:
        runs = ', '.join(f'{m}_{s}' for m, _ in METHODS for s in SPLITS)
        raise FileNotFoundError(
            f'{bench_dir} has no finished run: none of {runs} has '
            'test/<timestamp>/<timestamp>.json')
    os.makedirs(out_dir, exist_ok=True)
    table_file = osp.join(out_dir, 'results.md')
    chart_file = osp.join(out_dir, 'results.png')
    with open(table_file, 'w') as file:
        file.write(f'Test mIoU ({osp.abspath(bench_dir)})\n\n')
        file.write(results_table(results, methods, splits))
    plot_results(results, chart_file, methods, splits)
    return table_file, chart_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Summarize the CamVid benchmark work dirs')
    parser.add_argument(
        'bench_dir', help='directory with <method>_<split> work dirs')
    parser.add_argument(
        '--out-dir', help='where to write results.md/.png (default: '
        'bench_dir)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    table_file, chart_file = summarize(args.bench_dir, args.out_dir
                                       or args.bench_dir)
    with open(table_file) as file:
        print(file.read())
    print(f'wrote {table_file} and {chart_file}')


if __name__ == '__main__':
    main()
