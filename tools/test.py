"""Evaluate a checkpoint (supervised or semi-supervised) on the test set.

Same command line as mmseg's tools/test.py. For a semi-supervised model,
``--predict-on teacher|student`` picks the network (default: the config's).
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmseg_semi  # noqa: F401  (registers modules, applies patches)
from mmseg_semi.utils import adapt_config_to_device


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for logs and metrics')
    parser.add_argument('--out', help='directory to save predicted masks')
    parser.add_argument(
        '--show', action='store_true', help='show the predictions')
    parser.add_argument(
        '--show-dir',
        help='directory to save drawn predictions into (every '
        "visualization hook interval-th image, mmseg's default 50)")
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds each --show '
        'image is shown')
    parser.add_argument(
        '--predict-on',
        help='network of a semi-supervised model to evaluate '
        '(teacher, student, ...)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test time aug')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.predict_on is not None:
        if not any(key in cfg.model
                   for key in ('segmentor', 'segmentor1')):
            raise ValueError(
                f'--predict-on {args.predict_on}: {args.config} is not a '
                'semi-supervised config (its model has no segmentor or '
                'segmentor1)')
        cfg.model.predict_on = args.predict_on
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.out:
        cfg.test_evaluator.update(output_dir=args.out, keep_results=True)
    if args.tta:
        for key in ('tta_pipeline', 'tta_model'):
            if cfg.get(key) is None:
                raise KeyError(
                    f'--tta: {args.config} has no {key} (mmseg dataset '
                    'configs define tta_pipeline, its default_runtime.py '
                    "tta_model=dict(type='SegTTAModel'))")
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    return adapt_config_to_device(cfg)


def trigger_visualization_hook(cfg: Config, args) -> None:
    """Turn on the visualization hook as mmseg's tools/test.py does.

    The hook keeps its ``interval`` (mmseg's default: every 50th image);
    ``--show`` displays the drawings, ``--show-dir`` saves them.
    """
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise KeyError(
            f'--show/--show-dir: {args.config} has no '
            "default_hooks.visualization (e.g. dict(type="
            "'SegVisualizationHook'))")
    hook.draw = True
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time
    if args.show_dir:
        cfg.visualizer.save_dir = args.show_dir


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    return runner.test()


if __name__ == '__main__':
    main()
