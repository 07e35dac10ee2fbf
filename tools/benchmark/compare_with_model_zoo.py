"""Compare a semi-supervised model with a supervised mmseg model, per class.

Both models are evaluated on the same test data (the semi config's
``test_dataloader`` and ``test_evaluator``, or those of ``--data-config``)
and a markdown table of mIoU and per-class IoU, with the difference
(semi-supervised minus supervised), is printed (and written with
``--out``). The supervised side is any mmseg config and checkpoint: a file,
or a model-zoo URL.

Semi-supervised training can itself start from such a checkpoint: set
``load_from = '<checkpoint or URL>'`` in the semi config (or pass
``--cfg-options load_from=...`` to tools/train.py). A plain mmseg checkpoint
has no ``teacher.``/``student.`` prefixes, and the semi-supervised
segmentors load it into every teacher and student
(``SemiBaseSegmentor._load_from_state_dict``).

Example:
    python tools/benchmark/compare_with_model_zoo.py \
        configs/u2pl/u2pl_..._camvid-1-8-256x320.py \
        work_dirs/u2pl/iter_1000.pth \
        configs/supervised/deeplabv3plus_..._camvid-1-8-256x320.py \
        work_dirs/sup/iter_1000.pth --out compare.md
"""
import argparse
import math
import os.path as osp
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.utils import ProgressBar

import mmseg_semi  # noqa: F401  (registers modules, applies patches)
from mmseg.evaluation import IoUMetric
from mmseg_semi.utils.checkpoint_loading import build_model_from_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate a semi-supervised and a supervised model on '
        'the same test data; print per-class IoU and the difference')
    parser.add_argument('semi_config', help='semi-supervised config')
    parser.add_argument('semi_checkpoint', help='its checkpoint')
    parser.add_argument('sup_config', help='supervised mmseg config')
    parser.add_argument(
        'sup_checkpoint', help='its checkpoint: a file or a model-zoo URL')
    parser.add_argument(
        '--data-config',
        help='config whose test_dataloader/test_evaluator are used for both '
        '(default: the semi config)')
    parser.add_argument(
        '--predict-on',
        help='network of the semi model to evaluate (default: the '
        "config's model.predict_on, e.g. teacher)")
    parser.add_argument(
        '--max-images',
        type=int,
        help='evaluate only the first N test images (quick checks)')
    parser.add_argument(
        '--num-workers', type=int, help='override the loader workers')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='device (default: cuda when available)')
    parser.add_argument('--out', help='also write the table to this file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides applied to the semi config')
    return parser.parse_args(argv)


# ------------------------------------------------------------------ metrics
def iou_from_areas(intersect: np.ndarray, union: np.ndarray,
                   class_names) -> dict:
    """mIoU and per-class IoU (percent) from summed areas.

    As mmseg's ``IoUMetric``: IoU_c = |pred_c & gt_c| / |pred_c | gt_c|;
    a class absent from both prediction and ground truth has no IoU (NaN)
    and is left out of the mean.
    """
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.asarray(intersect, float) / np.asarray(union, float) * 100
    if len(iou) != len(class_names):
        raise ValueError(f'{len(iou)} IoU values for {len(class_names)} '
                         f'classes {list(class_names)}')
    valid = iou[~np.isnan(iou)]
    return dict(
        mIoU=float(valid.mean()) if valid.size else float('nan'),
        IoU=OrderedDict(
            (str(name), float(value))
            for name, value in zip(class_names, iou)))


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataloader, metric_cfg: dict) -> dict:
    """Run ``model.test_step`` over the loader; per-class IoU and mIoU.

    The per-image areas come from mmseg's ``IoUMetric`` (its ignore index
    and ``dataset_meta``); they are summed here instead of calling
    ``evaluate`` because that returns the mean only.
    """
    metric_cfg = dict(metric_cfg)
    metric_type = metric_cfg.pop('type', 'IoUMetric')
    if metric_type not in ('IoUMetric', 'mmseg.IoUMetric'):
        raise ValueError(f'test_evaluator type {metric_type!r}: only '
                         'IoUMetric is supported')
    metric = IoUMetric(**metric_cfg)
    metric.dataset_meta = dataloader.dataset.metainfo
    evaluator = Evaluator(metric)
    progress = ProgressBar(len(dataloader))
    for batch in dataloader:
        outputs = model.test_step(batch)
        evaluator.process(data_samples=outputs, data_batch=batch)
        progress.update()
    print()
    if not metric.results:
        raise RuntimeError('the test dataloader yielded no images')
    areas = [torch.stack([r[i] for r in metric.results]).sum(0).cpu().numpy()
             for i in range(2)]
    return iou_from_areas(areas[0], areas[1],
                          metric.dataset_meta['classes'])


# -------------------------------------------------------------------- table
def format_iou(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return 'n/a'
    return f'{value:+.2f}' if signed else f'{value:.2f}'


def comparison_table(semi: dict,
                     supervised: dict,
                     semi_name: str = 'semi-supervised',
                     supervised_name: str = 'supervised') -> str:
    """Markdown table: mIoU and each class's IoU for both models and
    ``delta`` = semi-supervised minus supervised (``n/a`` where a class
    has no IoU).

    Args:
        semi: ``dict(mIoU=float, IoU={class: float})`` of the
            semi-supervised model (:func:`iou_from_areas`).
        supervised: The same for the supervised model.
    """
    if list(semi['IoU']) != list(supervised['IoU']):
        raise ValueError(
            f'the models were evaluated on different classes: '
            f'{list(semi["IoU"])} vs {list(supervised["IoU"])}')
    rows = [('**mIoU**', semi['mIoU'], supervised['mIoU'])]
    rows += [(name, semi['IoU'][name], supervised['IoU'][name])
             for name in semi['IoU']]
    lines = [
        f'| class | {semi_name} | {supervised_name} | delta |',
        '|---|---|---|---|',
    ]
    for name, ours, theirs in rows:
        delta = ours - theirs  # NaN propagates to 'n/a'
        lines.append(f'| {name} | {format_iou(ours)} | '
                     f'{format_iou(theirs)} | '
                     f'{format_iou(delta, signed=True)} |')
    return '\n'.join(lines) + '\n'


# --------------------------------------------------------------------- main
def config_name(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def test_dataloader_cfg(data_cfg: Config, max_images: Optional[int],
                        num_workers: Optional[int]) -> dict:
    if 'test_dataloader' not in data_cfg or 'test_evaluator' not in data_cfg:
        raise KeyError(f'{data_cfg.filename} has no test_dataloader or '
                       'test_evaluator')
    loader = data_cfg.test_dataloader.to_dict()
    if max_images is not None:
        loader['dataset']['indices'] = max_images
    if num_workers is not None:
        loader['num_workers'] = num_workers
        if num_workers == 0:
            loader['persistent_workers'] = False
    return loader


def semi_model_config(args) -> Config:
    cfg = Config.fromfile(args.semi_config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if 'segmentor' not in cfg.model and 'segmentor1' not in cfg.model:
        raise ValueError(f'{args.semi_config} is not a semi-supervised '
                         'config (its model has no segmentor)')
    if args.predict_on is not None:
        cfg.model.predict_on = args.predict_on
    return cfg


def compare(args) -> str:
    semi_cfg = semi_model_config(args)
    sup_cfg = Config.fromfile(args.sup_config)
    data_cfg = Config.fromfile(args.data_config) if args.data_config \
        else semi_cfg
    init_default_scope(data_cfg.get('default_scope', 'mmseg'))
    dataloader = Runner.build_dataloader(
        test_dataloader_cfg(data_cfg, args.max_images, args.num_workers))
    if not isinstance(data_cfg.test_evaluator, dict):
        raise ValueError(
            f'{data_cfg.filename}: test_evaluator must be one IoUMetric '
            f'config, got {data_cfg.test_evaluator!r}')
    metric_cfg = data_cfg.test_evaluator.to_dict()

    semi_model, _ = build_model_from_checkpoint(semi_cfg,
                                                args.semi_checkpoint,
                                                args.device)
    semi = evaluate(semi_model, dataloader, metric_cfg)
    predict_on = getattr(semi_model, 'predict_on', None)
    del semi_model
    sup_model, _ = build_model_from_checkpoint(sup_cfg, args.sup_checkpoint,
                                               args.device)
    supervised = evaluate(sup_model, dataloader, metric_cfg)

    table = comparison_table(
        semi,
        supervised,
        semi_name=f'{config_name(args.semi_config)} ({predict_on})',
        supervised_name=config_name(args.sup_config))
    return (f'Test data: {args.data_config or args.semi_config} '
            f'({len(dataloader.dataset)} images)\n\n{table}')


def main(argv=None) -> str:
    args = parse_args(argv)
    report = compare(args)
    print(report)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(report)
    return report


if __name__ == '__main__':
    main()
