"""GPU readiness check: paper-scale loss and short trainings, one table.

Run by ``tools/benchmark/gpu_check.sh`` (which sets up the environment);
it can also be run directly in a ready environment. Rows:

(a) ``U2PLContrastiveLoss`` at the paper's scale (see
    ``bench_contrastive_loss.py``), fp32 and under fp16 autocast on the
    device, and fp32 on CPU for the same inputs. fp32 and fp16 use the same
    device generator, so they sample the same anchors and negatives and
    their losses should agree closely; the CPU reference draws its samples
    from a CPU generator, so it agrees only up to sampling noise, except on
    ``--device cpu`` where it is the same computation.
(b), (c) ``--iters`` training steps of a config at its per-GPU batch and
    crop size, with and without AMP, on synthetic batches (random uint8
    images, random labels; the machine has no datasets) fed through
    ``model.train_step`` with the config's ``optim_wrapper``. The models
    start from random weights (no ImageNet download) and the unsupervised
    losses are on from the first step. Single process: SyncBN becomes BN.
(d) where mmcv's CUDA ops are built and the device is a GPU: 2 steps of a
    mean teacher whose decode head upsamples with CARAFE.

``--device cpu --tiny`` shrinks everything (crops, loss scale, 2 steps)
so that a test can run the whole check on a CPU.
"""
import argparse
import datetime
import logging
import math
import os.path as osp
import resource
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import mmseg_semi  # noqa: E402,F401
from bench_contrastive_loss import synthetic_batch  # noqa: E402
from mmseg_semi.models.losses import U2PLContrastiveLoss  # noqa: E402
from mmseg_semi.utils.process_memory import (  # noqa: E402
    release_freed_heap, reset_peak_rss, status_kib)

# (section, label, config) of the training rows.
TRAIN_ROWS = [
    ('b', 'U2PL VOC R-101', 'configs/u2pl/u2pl_deeplabv3plus_r101-d8_'
     '8xb2-80e_voc12-classic-1-16-513x513.py'),
    ('b', 'RML Cityscapes R-101', 'configs/rml/rml_deeplabv2_r101-d8_'
     '2xb2-90k_cityscapes-1-8-256x512.py'),
    ('c', 'mean teacher CamVid', 'configs/mean_teacher/mean-teacher_'
     'deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py'),
    ('c', 'RML CamVid', 'configs/rml/rml_deeplabv3plus_effnetlite0-d16_'
     '1xb4-1k_camvid-1-8-256x320.py'),
]
CARAFE_BASE = TRAIN_ROWS[2][2]
TINY_CROP = (64, 64)
TINY_LOSS = dict(size=17, channels=16, queue_size=64, num_anchors=4,
                 num_negatives=8)
PAPER_LOSS = dict(size=129, channels=256, queue_size=30000, num_anchors=50,
                  num_negatives=256)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default=None,
                        help="'cpu' or 'cuda' (default: cuda if available)")
    parser.add_argument('--tiny', action='store_true',
                        help='tiny crops and loss, 2 steps (CPU test mode)')
    parser.add_argument('--iters', type=int, default=None,
                        help='timed steps per training row (default 20, '
                        'tiny 2)')
    parser.add_argument('--warmup', type=int, default=None,
                        help='untimed steps first (default 3, tiny 0)')
    args = parser.parse_args(argv)
    args.device = torch.device(args.device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    if args.iters is None:
        args.iters = 2 if args.tiny else 20
    if args.warmup is None:
        args.warmup = 0 if args.tiny else 3
    if args.iters < 1 or args.warmup < 0:
        parser.error(f'--iters must be >= 1 and --warmup >= 0, got '
                     f'{args.iters} and {args.warmup}')
    return args


# ----------------------------------------------------------------- measuring
def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Return the previous rows' freed heap to the system, then restart the
    # kernel's peak-RSS counter, so that each row reports its own peak.
    release_freed_heap()
    reset_peak_rss()


def peak_memory(device) -> str:
    """CUDA: max allocated since the last reset; CPU: the process's peak
    RSS since the last reset on Linux (elsewhere cumulative over rows, an
    upper bound per row)."""
    if device.type == 'cuda':
        return f'{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB'
    peak_kib = status_kib('VmHWM') or resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss
    return f'{peak_kib / 1024:.0f} MiB RSS'


def mmcv_ops() -> str:
    """Which mmcv ops this environment has: CUDA kernels or CPU only."""
    try:
        from mmcv.ops import get_compiling_cuda_version
    except ImportError as error:
        return f'mmcv.ops missing ({error})'
    cuda = get_compiling_cuda_version()
    if cuda == 'not available':
        return 'CPU kernels only'
    return f'CUDA kernels (CUDA {cuda})'


# ------------------------------------------------------ (a) contrastive loss
def contrastive_rows(args) -> list:
    """fp32 and fp16-autocast loss steps on the device, fp32 on CPU."""
    scale = TINY_LOSS if args.tiny else PAPER_LOSS
    loss_args = argparse.Namespace(batch_size=8, num_classes=21,
                                   unreliable_fraction=0.2, **scale)
    inputs = synthetic_batch(loss_args, torch.device('cpu'),
                             torch.Generator().manual_seed(0))
    keys = torch.nn.functional.normalize(
        torch.randn(21, scale['queue_size'], scale['channels'],
                    generator=torch.Generator().manual_seed(1)), dim=-1)

    def run(device, autocast, repeat):
        loss_fn = U2PLContrastiveLoss(
            num_classes=21, feat_channels=scale['channels'],
            num_anchors=scale['num_anchors'],
            num_negatives=scale['num_negatives'],
            queue_size=scale['queue_size']).to(device)
        moved = {k: v.detach().to(device) for k, v in inputs.items()}
        moved['student'].requires_grad_()
        times = []
        reset_peak(device)
        for _ in range(repeat):
            # Every step, and fp32 and fp16, start from the same full
            # queues and draw the same samples.
            generator = torch.Generator(device=device).manual_seed(0)
            loss_fn.memory_bank.keys.copy_(keys)
            loss_fn.memory_bank.count.fill_(scale['queue_size'])
            loss_fn.memory_bank.ptr.zero_()
            moved['student'].grad = None
            synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16,
                                enabled=autocast):
                loss = loss_fn(moved['student'], moved['teacher'],
                               moved['labels'], moved['probs'],
                               moved['unreliable'], moved['is_labeled'],
                               generator=generator)
            loss.backward()
            synchronize(device)
            times.append(time.perf_counter() - start)
        return loss.item(), statistics.median(times), peak_memory(device)

    repeat = 2 if args.tiny else 5
    cpu_loss = run(torch.device('cpu'), False, 1)[0]
    rows = []
    for name, autocast in (('fp32', False), ('fp16 autocast', True)):
        if autocast and args.device.type == 'cpu':
            # CPU autocast does not support float16 for every op here.
            continue
        loss, seconds, peak = run(args.device, autocast, repeat)
        rows.append(dict(
            check=f'(a) contrastive loss {name}',
            detail=f'B=8 {scale["size"]}x{scale["size"]} '
            f'D={scale["channels"]} K={scale["queue_size"]}',
            seconds=seconds, peak=peak, losses={'loss': loss},
            note=f'CPU fp32 loss {cpu_loss:.4f} '
            f'(rel. diff {relative(loss, cpu_loss):.1e})'))
    return rows


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# ----------------------------------------------------- (b)-(d) train steps
def strip_pretrained(node):
    """Drop ``Pretrained`` init_cfgs and ``pretrained`` keys in place: the
    check uses random weights (no checkpoint download, no network)."""
    if isinstance(node, dict):
        if node.get('pretrained') is not None:
            node['pretrained'] = None
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            strip_pretrained(value)


def uniform_class_weights(node, num_classes: int):
    """Give weights computed from the dataset by a hook (no dataset
    here) as uniform lists; the step costs the same."""
    if isinstance(node, dict):
        if isinstance(node.get('class_weight'), str):
            node['class_weight'] = [1.0] * num_classes
        for value in node.values():
            uniform_class_weights(value, num_classes)
    elif isinstance(node, (list, tuple)):
        for value in node:
            uniform_class_weights(value, num_classes)


def find_value(node, key):
    """First value of ``key`` in a nested config (e.g. ``num_classes``)."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        children = node.values()
    elif isinstance(node, (list, tuple)):
        children = node
    else:
        return None
    for child in children:
        found = find_value(child, key)
        if found is not None:
            return found
    return None


def load_config(path: str, amp: bool, tiny: bool):
    """The config with random weights, AMP as ``tools/train.py --amp`` sets
    it, and (tiny) a small crop; returns (cfg, batch, crop, classes)."""
    from mmengine.config import Config

    from mmseg_semi.utils import adapt_config_to_device

    cfg = Config.fromfile(osp.join(REPO, path))
    strip_pretrained(cfg.model)
    if 'unsup_start_iter' in cfg.model:
        cfg.model.unsup_start_iter = 0
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    crop = tuple(cfg.get('crop_size') or ())
    if len(crop) != 2:
        raise ValueError(f'{path}: crop_size must be (h, w), got {crop!r}')
    if tiny:
        crop = TINY_CROP
        shrink_preprocessors(cfg.model, crop)
    num_classes = find_value(cfg.model, 'num_classes')
    if not isinstance(num_classes, int):
        raise ValueError(f'{path}: no integer num_classes in model')
    uniform_class_weights(cfg.model, num_classes)
    return (adapt_config_to_device(cfg), cfg.train_dataloader.batch_size,
            crop, num_classes)


def shrink_preprocessors(node, crop):
    """Set every data preprocessor's fixed ``size`` (the segmentors'
    own too) to ``crop``: they would pad tiny crops back to full size."""
    if isinstance(node, dict):
        preprocessor = node.get('data_preprocessor')
        if isinstance(preprocessor, dict) and preprocessor.get('size'):
            preprocessor['size'] = crop
        for value in node.values():
            shrink_preprocessors(value, crop)
    elif isinstance(node, (list, tuple)):
        for value in node:
            shrink_preprocessors(value, crop)


def synthetic_semi_batch(batch: int, crop, num_classes: int, seed: int):
    """A data-loader batch (labeled + weak/strong unlabeled views) of
    random uint8 images and labels, shaped like the config's crops."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    generator = torch.Generator().manual_seed(seed)
    height, width = crop

    def image():
        return torch.randint(0, 256, (3, height, width),
                             generator=generator, dtype=torch.uint8)

    def sample(labeled):
        data_sample = SegDataSample(metainfo=dict(
            img_shape=crop, ori_shape=crop, pad_shape=crop))
        if labeled:
            data_sample.gt_sem_seg = PixelData(data=torch.randint(
                0, num_classes, (1, height, width), generator=generator))
        return data_sample

    weak = [image() for _ in range(batch)]
    return dict(
        labeled=dict(inputs=[image() for _ in range(batch)],
                     data_samples=[sample(True) for _ in range(batch)]),
        unlabeled=dict(
            inputs=dict(weak=weak, strong=[255 - img for img in weak]),
            data_samples=dict(weak=[sample(False) for _ in range(batch)],
                              strong=[sample(False) for _ in range(batch)])))


def train_row(args, section, label, cfg, batch, crop, num_classes, amp,
              iters, warmup):
    """Build, then time ``warmup + iters`` train steps; one table row."""
    from mmengine.logging import MessageHub
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # One process: mmengine's runner does the same.
    model = revert_sync_batchnorm(model).to(args.device)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    hub = MessageHub.get_current_instance()
    total = warmup + iters
    times, losses = [], {}
    reset_peak(args.device)
    for step in range(total):
        hub.update_info('iter', step)
        if hasattr(model, 'set_train_progress'):
            model.set_train_progress(step, total)
        data = synthetic_semi_batch(batch, crop, num_classes, step)
        model.train()
        synchronize(args.device)
        start = time.perf_counter()
        log_vars = model.train_step(data, wrapper)
        synchronize(args.device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
        for key, value in log_vars.items():
            # Keep a non-finite value once seen; else the latest.
            if 'loss' in key and math.isfinite(losses.get(key, 0.0)):
                losses[key] = float(value)
    amp_name = ('fp16' if args.device.type == 'cuda' else 'bf16') \
        if amp else 'fp32'
    return dict(check=f'({section}) {label} {amp_name}',
                detail=f'{batch}+{batch} x {crop[0]}x{crop[1]}',
                seconds=statistics.median(times),
                peak=peak_memory(args.device), losses=losses,
                note=f'{iters} steps after {warmup} warm-up')


def carafe_cfg(args):
    """Mean teacher on CamVid whose decode head upsamples with CARAFE."""
    cfg, batch, crop, classes = load_config(CARAFE_BASE, False, args.tiny)
    head = cfg.model.segmentor.decode_head
    cfg.model.segmentor.decode_head = dict(
        type='CARAFEFCNHead', in_channels=head.in_channels,
        in_index=head.in_index, channels=head.channels, num_convs=1,
        num_classes=head.num_classes, norm_cfg=head.norm_cfg,
        align_corners=head.align_corners, loss_decode=head.loss_decode)
    return cfg, batch, crop, classes


def register_carafe_head():
    """An FCN head whose features are upsampled 2x by CARAFE (an mmcv op
    with CUDA kernels only) before classification."""
    from mmcv.ops import CARAFEPack
    from mmseg.models.decode_heads import FCNHead
    from mmseg.registry import MODELS

    @MODELS.register_module(force=True)
    class CARAFEFCNHead(FCNHead):

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.carafe = CARAFEPack(self.channels, scale_factor=2)

        def forward(self, inputs):
            return self.cls_seg(self.carafe(self._forward_feature(inputs)))


# ---------------------------------------------------------------- the table
def format_table(args, rows) -> str:
    lines = [
        f'GPU readiness check, {datetime.date.today()}, '
        f'{device_name(args.device)}, torch {torch.__version__}, '
        f'mmcv ops: {mmcv_ops()}', '',
        '| check | batch / scale | s/iter | peak memory | losses finite '
        '| losses | note |', '|---|---|---|---|---|---|---|'
    ]
    for row in rows:
        finite = all(math.isfinite(v) for v in row['losses'].values())
        losses = ', '.join(f'{k}={v:.4g}' for k, v in row['losses'].items())
        lines.append(f"| {row['check']} | {row['detail']} | "
                     f"{row['seconds']:.3f} | {row['peak']} | "
                     f"{'yes' if finite else 'NO'} | {losses} | "
                     f"{row['note']} |")
    return '\n'.join(lines)


def device_name(device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'CPU, {torch.get_num_threads()} threads'


def main(argv=None):
    from mmengine.logging import MMLogger
    from mmseg.utils import register_all_modules

    args = parse_args(argv)
    register_all_modules(init_default_scope=True)
    # Keep the table readable: the optimiser's per-parameter notes and the
    # frozen-teacher warnings would run to thousands of lines.
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    rows = contrastive_rows(args)
    for section, label, path in TRAIN_ROWS:
        for amp in (False, True):
            cfg, batch, crop, classes = load_config(path, amp, args.tiny)
            if args.tiny:
                batch = 2  # BN's image pooling needs two images
            rows.append(train_row(args, section, label, cfg, batch, crop,
                                  classes, amp, args.iters, args.warmup))
    if args.device.type == 'cuda' and mmcv_ops().startswith('CUDA'):
        register_carafe_head()
        cfg, batch, crop, classes = carafe_cfg(args)
        rows.append(train_row(args, 'd', 'mean teacher + CARAFE head', cfg,
                              batch, crop, classes, False, 2, 0))
    print(format_table(args, rows))
    if len(rows) == len(TRAIN_ROWS) * 2 + 2 - (args.device.type == 'cpu'):
        print('\n(d) CARAFE under the mean teacher: skipped (needs a GPU '
              'and mmcv built with CUDA ops)')
    failed = [row['check'] for row in rows
              if not all(math.isfinite(v) for v in row['losses'].values())]
    if failed:
        raise SystemExit(f'non-finite losses in: {", ".join(failed)}')


if __name__ == '__main__':
    main()
