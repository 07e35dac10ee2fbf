"""Plot training curves of an mmengine run (losses, mIoU, pseudo-labelling).

Reads ``vis_data/scalars.json`` (one JSON record per logged step) or the
text ``.log`` of a run and draws the chosen scalars over iterations, one
panel per group: every ``*mIoU`` key together (teacher/student/ensemble),
every loss together, then one panel per other key. Where the run has a
``class_shares.jsonl`` (written by ``ClassCollapseGuardHook``), one more
panel per teacher shows each class's share of the reliable pseudo-labels
divided by its labeled share (``class_share/<class>``: 1 is balanced, a
curve falling towards 0 is a class the pseudo-labels are losing).

Examples:
    # default keys: */mIoU, losses, unsup_alpha, unsup_weight and RML's
    # teacher agreement / total-variation distance, whichever were logged
    python tools/analysis_tools/plot_curves.py work_dirs/u2pl_1-8
    python tools/analysis_tools/plot_curves.py RUN/vis_data/scalars.json \
        --keys 'teacher/mIoU' 'unsup_reliable_ratio' --out curves.png
"""
import argparse
import fnmatch
import glob
import json
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Sequence, Tuple

#: Keys plotted when none are given (shell-style patterns).
DEFAULT_KEYS = ('*mIoU', 'loss', 'sup*loss*', 'unsup*loss*', 'unsup*_alpha',
                'unsup*_weight', 'unsup_teacher_tv_distance',
                'unsup_teacher_agreement', 'class_share/*')
#: Keys of the class-share curves (one panel per teacher).
CLASS_SHARE_PREFIX = 'class_share/'
CLASS_SHARES_FILE = 'class_shares.jsonl'

#: One curve: (iterations, values).
Curve = Tuple[List[int], List[float]]

_LOG_ITER = re.compile(r'Iter\((train|val|test)\)\s*\[\s*(\d+)/\s*\d+\]')
_LOG_SCALAR = re.compile(r'(\S+):\s+(-?[0-9.]+(?:e[-+]?\d+)?)(?=\s|$)')


def find_scalars_file(path: str) -> str:
    """The scalars file to read: ``path`` itself, or for a work dir the
    newest ``<timestamp>/vis_data/scalars.json`` (training, not test)."""
    if osp.isfile(path):
        return path
    if osp.isdir(path):
        found = sorted(
            glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
        if found:
            return found[-1]
        raise FileNotFoundError(
            f'{path} has no <timestamp>/vis_data/scalars.json (is it an '
            'mmengine work dir with a finished log?)')
    raise FileNotFoundError(f'scalars file {path} does not exist')


def read_scalars_json(path: str) -> Dict[str, Curve]:
    """Curves from mmengine's ``scalars.json``.

    Training records carry ``iter``; validation records only ``step``
    (which mmengine sets to the training iteration), so ``step`` is the x
    axis of every record.
    """
    curves: Dict[str, Curve] = OrderedDict()
    with open(path) as file:
        for line_no, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}:{line_no} is not a JSON record: '
                                 f'{error}') from None
            step = record.get('step', record.get('iter'))
            if step is None:
                continue
            for key, value in record.items():
                if key in ('step', 'iter', 'epoch') or \
                        isinstance(value, bool) or \
                        not isinstance(value, (int, float)):
                    continue
                xs, ys = curves.setdefault(key, ([], []))
                xs.append(int(step))
                ys.append(float(value))
    return curves


def read_text_log(path: str) -> Dict[str, Curve]:
    """Curves from mmengine's text log (``Iter(train) [ i/N] k: v ...``).

    Validation lines count their own batches, so they are placed at the
    last training iteration seen before them.
    """
    curves: Dict[str, Curve] = OrderedDict()
    train_iter = 0
    with open(path) as file:
        for line in file:
            match = _LOG_ITER.search(line)
            if match is None:
                continue
            mode, index = match.group(1), int(match.group(2))
            if mode == 'train':
                train_iter = index
            rest = line[match.end():]
            for key, value in _LOG_SCALAR.findall(rest):
                if key in ('eta', 'time', 'data_time', 'memory') \
                        and mode != 'train':
                    continue
                xs, ys = curves.setdefault(key, ([], []))
                xs.append(train_iter)
                ys.append(float(value))
    return curves


def read_class_shares(path: str) -> Dict[str, Curve]:
    """``class_share/[<teacher>/]<class>`` curves of a ``class_shares.jsonl``:
    the class's share of the reliable pseudo-labels over its labeled share
    (classes without labeled pixels are left out)."""
    curves: Dict[str, Curve] = OrderedDict()
    with open(path) as file:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                prefix = f'{record["teacher"]}/' if record['teacher'] else ''
                rows = zip(record['classes'], record['pseudo_label_share'],
                           record['labeled_share'])
                iteration = int(record['iter'])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f'{path}:{line_number} is not a class-share '
                                 f'record: {error!r}') from None
            for name, share, labeled in rows:
                if labeled > 0:
                    xs, ys = curves.setdefault(
                        f'{CLASS_SHARE_PREFIX}{prefix}{name}', ([], []))
                    xs.append(iteration)
                    ys.append(share / labeled)
    return curves


def class_shares_file(source: str) -> str:
    """Where the guard hook writes beside a run's scalars or text log."""
    run_dir = osp.dirname(source)
    if osp.basename(run_dir) == 'vis_data':
        run_dir = osp.dirname(run_dir)
    return osp.join(run_dir, CLASS_SHARES_FILE)


def read_curves(path: str) -> Dict[str, Curve]:
    """Curves of a ``scalars.json``/``.json`` file or a text ``.log``, plus
    the class-share curves of the run when it has them."""
    curves = read_text_log(path) if path.endswith('.log') \
        else read_scalars_json(path)
    shares = class_shares_file(path)
    if osp.isfile(shares):
        curves.update(read_class_shares(shares))
    return curves


def select_keys(available: Sequence[str], patterns: Sequence[str],
                source: str, strict: bool) -> List[str]:
    """Keys matching the patterns, in pattern order.

    Args:
        available: Keys present in the run.
        patterns: Shell-style patterns (``fnmatch``), e.g. ``'*/mIoU'``.
        source: File name, for error messages.
        strict: Every pattern must match a key (patterns the user asked
            for); otherwise only the union must be non-empty (defaults).
    """
    selected: List[str] = []
    for pattern in patterns:
        matched = [k for k in available if fnmatch.fnmatchcase(k, pattern)]
        if strict and not matched:
            raise KeyError(
                f'{source} has no scalar matching {pattern!r}; it has: '
                f'{", ".join(sorted(available)) or "no scalars"}')
        selected += [k for k in matched if k not in selected]
    if not selected:
        raise KeyError(
            f'{source} has none of the keys {list(patterns)}; it has: '
            f'{", ".join(sorted(available)) or "no scalars"}')
    return selected


def group_keys(keys: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """Panels: all mIoU keys, all loss keys, one panel per other key, then
    the class-share curves, one panel per teacher."""
    shares = [k for k in keys if k.startswith(CLASS_SHARE_PREFIX)]
    miou = [k for k in keys if k.endswith('mIoU') and k not in shares]
    losses = [k for k in keys if 'loss' in k and k not in miou + shares]
    groups = []
    if miou:
        groups.append(('mIoU', miou))
    if losses:
        groups.append(('loss', losses))
    groups += [(k, [k]) for k in keys
               if k not in miou and k not in losses and k not in shares]
    by_teacher: Dict[str, List[str]] = OrderedDict()
    for key in shares:
        parts = key[len(CLASS_SHARE_PREFIX):].split('/')
        teacher = parts[0] + ' ' if len(parts) > 1 else ''
        by_teacher.setdefault(teacher, []).append(key)
    groups += [(f'{teacher}pseudo-label / labeled share', group)
               for teacher, group in by_teacher.items()]
    return groups


def plot_curves(curves: Dict[str, Curve],
                keys: Sequence[str],
                out_file: str,
                title: str = '',
                panel_width: float = 8.0,
                panel_height: float = 3.0,
                dpi: int = 100) -> Tuple[int, int]:
    """Draw the keys' curves, one panel per group, into a PNG.

    Returns:
        ``(width, height)`` of the image in pixels:
        ``(panel_width * dpi, panel_height * dpi * panels)``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    groups = group_keys(keys)
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(panel_width, panel_height * len(groups)),
        dpi=dpi,
        squeeze=False)
    for axis, (name, group) in zip(axes[:, 0], groups):
        for key in group:
            xs, ys = curves[key]
            axis.plot(xs, ys, marker='.' if len(xs) < 30 else None, label=key)
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend(fontsize='small', loc='best')
    axes[-1, 0].set_xlabel('iteration')
    if title:
        axes[0, 0].set_title(title, fontsize='small')
    figure.tight_layout()
    figure.savefig(out_file, dpi=dpi)
    plt.close(figure)
    return int(round(panel_width * dpi)), int(
        round(panel_height * dpi * len(groups)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plot scalars of an mmengine run over iterations')
    parser.add_argument(
        'path',
        help='vis_data/scalars.json, a text .log, or a work dir (its newest '
        'training scalars.json)')
    parser.add_argument(
        '--keys',
        nargs='+',
        help='scalar names or shell patterns (default: '
        f'{" ".join(DEFAULT_KEYS)}, whichever exist)')
    parser.add_argument(
        '--out', help='PNG to write (default: curves.png beside the file)')
    parser.add_argument('--title', help='figure title (default: the file)')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    source = find_scalars_file(args.path)
    curves = read_curves(source)
    keys = select_keys(
        list(curves), args.keys or DEFAULT_KEYS, source,
        strict=bool(args.keys))
    out_file = args.out or osp.join(osp.dirname(source), 'curves.png')
    width, height = plot_curves(curves, keys, out_file,
                                args.title if args.title is not None
                                else source)
    print(f'{out_file}: {width}x{height} px, keys: {", ".join(keys)}')
    return out_file


if __name__ == '__main__':
    main()
