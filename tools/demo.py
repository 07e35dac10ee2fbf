"""Short semi-supervised training + evaluation on CamVid, printing mIoU.

The README's first command (``make demo``) runs this: it trains a config for
a few hundred iterations on 2 CPU cores and evaluates the teacher and the
student on the CamVid test split.

Example:
    python tools/demo.py --data-root ../shared/data/camvid --iters 200
"""
import argparse
import os
import os.path as osp
import time

DEFAULT_CONFIG = ('configs/mean_teacher/mean-teacher_deeplabv3plus_'
                  'effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument(
        '--data-root',
        default=os.environ.get('MMSEG_SEMI_CAMVID_ROOT',
                               '../shared/data/camvid'),
        help='CamVid root (default: $MMSEG_SEMI_CAMVID_ROOT or '
        '../shared/data/camvid)')
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    data_root = osp.abspath(args.data_root)
    if not osp.isdir(osp.join(data_root, 'train')):
        raise FileNotFoundError(
            f'CamVid not found at {data_root} (expected train/, trainannot/, '
            'test/, testannot/); pass --data-root or set '
            'MMSEG_SEMI_CAMVID_ROOT')
    # Configs read the data root from this variable at parse time.
    os.environ['MMSEG_SEMI_CAMVID_ROOT'] = data_root

    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmseg_semi  # noqa: F401
    from mmseg_semi.utils import adapt_config_to_device

    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    cfg.train_cfg.max_iters = args.iters
    cfg.train_cfg.val_interval = args.iters + 1  # evaluate on test below
    for scheduler in cfg.param_scheduler:
        scheduler.end = min(scheduler.get('end', args.iters), args.iters)
    cfg.default_hooks.checkpoint.interval = args.iters
    cfg.default_hooks.checkpoint.pop('save_best', None)
    cfg = adapt_config_to_device(cfg)

    start = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_seconds = time.time() - start

    model = runner.model.module if hasattr(runner.model, 'module') \
        else runner.model
    names = model.predict_choices() if hasattr(model,
                                               'predict_choices') else [None]
    results = {}
    for name in names:
        if name is not None:
            model.predict_on = name
        metrics = runner.test_loop.run()
        results[name or 'model'] = metrics['mIoU']
    print()
    print(f'CamVid test mIoU after {args.iters} iterations '
          f'({train_seconds / 60:.1f} min of training, {args.config}):')
    for name, miou in results.items():
        print(f'  {name:<8} mIoU = {miou:.2f}')


if __name__ == '__main__':
    main()
