"""Shared tiny models and CamVid run configs for the tests.

Imported as ``helpers`` from every test folder (``tests/conftest.py`` puts
this directory on ``sys.path``). A test module that imports
:func:`single_thread` runs with one torch thread; one that imports
:func:`config_environment` also gets the mmseg scope and memoised
``mmseg::`` config lookups.
"""
import contextlib
import copy
import importlib.util
import math
import os
import os.path as osp
import socket
import time
from datetime import timedelta
from typing import Callable, Optional, Sequence

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

TESTS_DIR = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(TESTS_DIR)
CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
SPLIT_DIR = osp.join(REPO_ROOT, 'splits', 'camvid')
MEAN_TEACHER_CONFIG = osp.join(
    CONFIG_DIR, 'mean_teacher',
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')
SUPERVISED_CONFIG = osp.join(
    CONFIG_DIR, 'supervised',
    'deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')
CAMVID_CLASSES = ('sky', 'building', 'pole', 'road', 'pavement', 'tree',
                  'sign_symbol', 'fence', 'car', 'pedestrian', 'bicyclist')


def load_script(*parts: str, name: Optional[str] = None):
    """Import a script by path (``tools/`` and ``demo/`` are not packages):
    ``parts`` are joined under the repository root, or start with an
    absolute path. A fresh module per call, not put in ``sys.modules``."""
    path = osp.join(REPO_ROOT, *parts)
    name = name or osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: Per-channel mean/std of the tiny models' preprocessor (BGR -> RGB).
MEAN = [100.0, 110.0, 120.0]
STD = [50.0, 60.0, 70.0]


def camvid_root() -> str:
    """The real CamVid: $MMSEG_SEMI_CAMVID_ROOT or ../shared/data/camvid."""
    root = os.environ.get('MMSEG_SEMI_CAMVID_ROOT') or osp.join(
        REPO_ROOT, '..', 'shared', 'data', 'camvid')
    root = osp.abspath(root)
    if not osp.isdir(osp.join(root, 'train')):
        raise FileNotFoundError(
            f'CamVid not found at {root}; set MMSEG_SEMI_CAMVID_ROOT')
    return root


def ccp_root() -> str:
    """The CCP data: $MMSEG_SEMI_CCP_ROOT or ../shared/data/ccp."""
    root = os.environ.get('MMSEG_SEMI_CCP_ROOT') or osp.join(
        REPO_ROOT, '..', 'shared', 'data', 'ccp')
    root = osp.abspath(root)
    if not osp.isdir(osp.join(root, 'img_dir', 'train')):
        raise FileNotFoundError(
            f'CCP not found at {root}; set MMSEG_SEMI_CCP_ROOT')
    return root


def seg_preprocessor(size_divisor: Optional[int] = 32) -> dict:
    return dict(
        type='SegDataPreProcessor',
        mean=list(MEAN),
        std=list(STD),
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=size_divisor)


def tiny_segmentor_cfg(num_classes: int = 3) -> dict:
    """EncoderDecoder: ResNetV1c-18 (8 base channels, output stride 8, no
    dilation) and a one-conv FCN head without dropout, BN everywhere."""
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=seg_preprocessor(),
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=8,
            base_channels=8,
            strides=(1, 2, 1, 1),  # no dilation: slow on CPU
            out_indices=(3, ),
            norm_cfg=norm_cfg),
        decode_head=dict(
            type='FCNHead',
            in_channels=64,
            in_index=0,
            channels=16,
            num_convs=1,
            concat_input=False,
            dropout_ratio=0.0,
            num_classes=num_classes,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


#: Channels of the tiny DeepLabV3+ head: ``sep_bottleneck`` reads the ASPP
#: output (``channels``) joined with the low-level one (``c1_channels``).
TINY_DLV3P_CHANNELS, TINY_DLV3P_C1_CHANNELS = 16, 4


def tiny_deeplabv3plus_cfg(num_classes: int = 3) -> dict:
    """:func:`tiny_segmentor_cfg` with mmseg's DeepLabV3+ head
    (DepthwiseSeparableASPPHead): ASPP on the last stage (64 channels,
    stride 8), low-level features from the first (8 channels, stride 4)."""
    cfg = tiny_segmentor_cfg(num_classes)
    cfg['backbone']['out_indices'] = (0, 1, 2, 3)
    cfg['decode_head'] = dict(
        type='DepthwiseSeparableASPPHead',
        in_channels=64,
        in_index=3,
        channels=TINY_DLV3P_CHANNELS,
        dilations=(1, 2),
        c1_in_channels=8,
        c1_channels=TINY_DLV3P_C1_CHANNELS,
        dropout_ratio=0.0,
        num_classes=num_classes,
        norm_cfg=dict(type='BN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
    return cfg


def tiny_mean_teacher_cfg(**kwargs) -> dict:
    cfg = dict(
        type='MeanTeacherSegmentor',
        segmentor=tiny_segmentor_cfg(),
        pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
        cutmix=None)
    cfg.update(kwargs)
    return copy.deepcopy(cfg)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, world_size: int, init_method: str):
    """A gloo process group for one spawned worker, torn down safely.

    Collectives give up after two minutes instead of torch's thirty, and
    every rank waits at a barrier before any leaves, so a fast rank never
    tears down the group under a peer's last collective.
    """
    dist.init_process_group(
        'gloo', init_method=init_method, rank=rank, world_size=world_size,
        timeout=timedelta(seconds=120))
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn_gloo_workers(worker: Callable, *args, nprocs: int = 2,
                       timeout: float = 300) -> None:
    """Run ``worker(rank, nprocs, init_method, *args)`` in ``nprocs``
    processes.

    As ``mp.spawn``, with a TCP store on loopback (as torchrun's) and a
    deadline: workers still running after ``timeout`` seconds are killed and
    the test fails, instead of hanging the suite.
    """
    init_method = f'tcp://127.0.0.1:{free_port()}'
    context = mp.start_processes(
        worker, args=(nprocs, init_method) + args, nprocs=nprocs,
        join=False, start_method='spawn')
    deadline = time.monotonic() + timeout
    # join() re-raises a worker's exception and is True once all have exited.
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'{nprocs} gloo workers ran over {timeout} s')


def tiny_camvid_run_config(base_config: str,
                           semi: bool,
                           crop: int = 64,
                           max_iters: int = 4,
                           val_interval: int = 1000,
                           val_images: int = 2,
                           checkpoint_interval: int = 2,
                           unsup_start_iter: int = 1,
                           segmentor_keys: Sequence[str] = ('segmentor', ),
                           data_root: Optional[str] = None) -> str:
    """Text of a config that trains ``base_config`` on real CamVid, small.

    64x64 crops from images resized to 1/4 of CamVid's size, batch 2 (labeled
    and unlabeled), no data-loader workers, deterministic, validation on
    ``val_images`` images resized to 64x64 (the training shape, so CPU
    kernels set up for training are reused), ImageNet weights kept. The
    network keeps its architecture but drops dilation (backbone output
    stride 32, ASPP rates 1), which is several times slower on CPU. A semi
    config's supervised-only warm-up ends at ``unsup_start_iter``;
    ``segmentor_keys`` names the semi model's segmentor configs to make
    undilated (``('segmentor1', 'segmentor2')`` for RML). ``data_root``
    replaces CamVid's (e.g. CCP's, :func:`ccp_root`).
    """
    root = data_root or camvid_root()
    lines = [
        f'_base_ = [{base_config!r}]',
        f'data_root = {root!r}',
        f'crop_size = ({crop}, {crop})',
        'geometry = [',
        "    dict(type='RandomResize', scale=(120, 90),",
        '         ratio_range=(0.75, 1.25), keep_ratio=True),',
        "    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),",
        "    dict(type='RandomFlip', prob=0.5),",
        ']',
        "train_pipeline = [dict(type='LoadImageFromFile'),",
        "                  dict(type='LoadAnnotations')] + geometry + \\",
        "    [dict(type='PackSegInputs')]",
        "test_pipeline = [dict(type='LoadImageFromFile'),",
        "                 dict(type='Resize', scale=crop_size,",
        "                      keep_ratio=False),",
        "                 dict(type='LoadAnnotations'),",
        "                 dict(type='PackSegInputs')]",
        'loader = dict(batch_size=2, num_workers=0, persistent_workers=False)',
        'train_dataloader = dict(',
        '    **loader,',
        '    dataset=dict(data_root=data_root, pipeline=train_pipeline))',
        'val_dataloader = dict(',
        '    batch_size=2, num_workers=0, persistent_workers=False,',
        '    dataset=dict(data_root=data_root, pipeline=test_pipeline,',
        f'                 indices={val_images}))',
        'test_dataloader = val_dataloader',
        "randomness = dict(seed=0, deterministic=True)",
        "default_hooks = dict(",
        "    logger=dict(interval=1),",
        f"    checkpoint=dict(interval={checkpoint_interval}),",
        "    visualization=dict(type='SegVisualizationHook', draw=False))",
        "param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9,",
        f"                        begin=0, end={max_iters}, by_epoch=False)]",
    ]
    undilated = ('dict(backbone=dict(output_stride=32), '
                 'decode_head=dict(dilations=(1, 1, 1, 1)))')
    train_cfg = (f'train_cfg = dict(max_iters={max_iters}, '
                 f'val_interval={val_interval}')
    if semi:
        lines += [
            f'model = dict(unsup_start_iter={unsup_start_iter}, ' +
            ', '.join(f'{key}={undilated}' for key in segmentor_keys) + ')',
            "unlabeled_pipeline = [dict(type='LoadImageFromFile')] + "
            'geometry + [',
            "    dict(type='MultiBranch', branches=dict(",
            "        weak=[dict(type='PackSegInputs')],",
            "        strong=[dict(type='RandomApply', prob=0.8, transforms=[",
            "                    dict(type='RandomColorJitter')]),",
            "                dict(type='RandomGrayscale', prob=0.2,",
            "                     keep_channels=True,",
            "                     channel_weights=(0.114, 0.587, 0.299)),",
            "                dict(type='RandomApply', prob=0.5, transforms=[",
            "                    dict(type='RandomGaussianBlur')]),",
            "                dict(type='PackSegInputs')]))]",
        ]
        train_cfg += (', unlabeled_dataloader=dict(**loader, dataset=dict('
                      'data_root=data_root, pipeline=unlabeled_pipeline))')
    else:
        lines.append(f'model = {undilated}')
    lines.append(train_cfg + ')')
    return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module', autouse=True)
def single_thread():
    """One intra-op thread: on a shared, busy machine OpenMP's spinning
    threads make every op many times slower than one thread does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------- tiny U2PL and batches
def tiny_rep_head_cfg(**kwargs) -> dict:
    """U2PL's representation head, 8 channels, one conv, no dropout."""
    cfg = dict(
        type='RepresentationHead', channels=8, num_convs=1,
        dropout_ratio=0.0)
    cfg.update(kwargs)
    return cfg


def tiny_contrastive_loss_cfg(**kwargs) -> dict:
    """U2PL's contrastive loss on 8-d features with a 64-entry bank, few
    anchors and negatives, every pixel an anchor candidate."""
    cfg = dict(
        type='U2PLContrastiveLoss',
        feat_channels=8,
        num_anchors=4,
        num_negatives=6,
        anchor_prob_threshold=0.0,
        low_rank=1,
        high_rank=3,
        queue_size=64)
    cfg.update(kwargs)
    return cfg


def tiny_u2pl_cfg(**kwargs) -> dict:
    """:func:`tiny_mean_teacher_cfg` (3 classes) with U2PL's head (on the
    FCN head's 16 channels) and contrastive loss (weight 0.1)."""
    u2pl = dict(
        rep_head=tiny_rep_head_cfg(in_channels=16),
        contrastive_loss=tiny_contrastive_loss_cfg(
            num_classes=3, loss_weight=0.1))
    u2pl.update(kwargs)
    return tiny_mean_teacher_cfg(**u2pl)


def tiny_labeled_samples(batch: int,
                         seed: int = 0,
                         size: int = 32,
                         num_classes: int = 3) -> list:
    """``batch`` unpadded size x size samples, random labels from a
    generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size),
                padding_size=[0, 0, 0, 0]))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(
                0, num_classes, (1, size, size), generator=generator))
        samples.append(sample)
    return samples


def tiny_semi_inputs(batch: int = 2, seed: int = 0, size: int = 32):
    """(inputs, data_samples) for ``SemiBaseSegmentor.loss``: normalised
    labeled and weak images, the strong view an affine change of the weak
    one, and labeled samples for all three views (seeds seed, +1, +2)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {
        view: torch.randn(batch, 3, size, size, generator=generator)
        for view in ('labeled', 'weak')
    }
    inputs['strong'] = inputs['weak'] * 0.8 + 0.1
    samples = {
        view: tiny_labeled_samples(batch, seed + offset, size)
        for offset, view in enumerate(('labeled', 'weak', 'strong'))
    }
    return inputs, samples


def tiny_raw_semi_batch(seed: int = 0) -> dict:
    """A data-loader batch for ``train_step``: 2 labeled and 2 unlabeled
    uint8 32x32 images (strong view: the weak one inverted), 3 classes."""
    generator = torch.Generator().manual_seed(seed)

    def image():
        return torch.randint(0, 256, (3, 32, 32), generator=generator,
                             dtype=torch.uint8)

    def sample(labeled):
        data_sample = SegDataSample(
            metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
        if labeled:
            data_sample.gt_sem_seg = PixelData(data=torch.randint(
                0, 3, (1, 32, 32), generator=generator))
        return data_sample

    weak = [image(), image()]
    return dict(
        labeled=dict(inputs=[image(), image()],
                     data_samples=[sample(True), sample(True)]),
        unlabeled=dict(
            inputs=dict(weak=weak, strong=[255 - img for img in weak]),
            data_samples=dict(weak=[sample(False), sample(False)],
                              strong=[sample(False), sample(False)])))


# ------------------------------------------------- pseudo-label inputs
def entropy_of(*probs) -> float:
    """Entropy of one pixel written out term by term (0 log 0 = 0)."""
    return -sum(p * math.log(p) for p in probs if p > 0)


def probs_1x5() -> torch.Tensor:
    """B=1, C=3, H=1, W=5 teacher probabilities used by several tests.

    Pixel entropies: 0, H(.1,.8,.1), H(.2,.2,.6), ln 3, 0.
    """
    pixels = [
        [1.0, 0.0, 0.0],
        [0.1, 0.8, 0.1],
        [0.2, 0.2, 0.6],
        [1 / 3, 1 / 3, 1 / 3],
        [0.0, 0.0, 1.0],
    ]
    return torch.tensor(pixels).t().reshape(1, 3, 1, 5)


# ------------------------------------------------- reading config files
@contextlib.contextmanager
def memoised_mmseg_base_lookup():
    """Within: mmengine resolves each ``mmseg::`` base once.

    mmengine resolves every ``mmseg::`` base by first reading all of
    mmseg's model-zoo metafiles (about 0.5 s each time); the answer only
    depends on the arguments, so it is memoised, errors included (a
    ``_base_`` fragment is not a model-zoo config and raises ValueError).
    """
    lookup = mmengine_config._get_external_cfg_path
    answers = {}

    def memoised_lookup(package_path, cfg_file):
        key = (package_path, cfg_file)
        if key not in answers:
            try:
                answers[key] = (lookup(package_path, cfg_file), None)
            except ValueError as error:
                answers[key] = (None, error.args)
        path, error_args = answers[key]
        if error_args is not None:
            raise ValueError(*error_args)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmengine_config, '_get_external_cfg_path',
                      memoised_lookup)
        yield


@pytest.fixture(scope='module', autouse=True)
def config_environment():
    """mmseg scope, one torch thread (R-101 steps on a shared 2-core
    machine), memoised ``mmseg::`` base lookups, for a whole module."""
    init_default_scope('mmseg')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with memoised_mmseg_base_lookup():
        yield
    torch.set_num_threads(threads)


def config_loader(config_dir: str) -> Callable[[str], Config]:
    """A ``load(relpath)`` that parses each config under ``config_dir``
    once (the caller's own cache; tests must not modify what it returns).
    """
    loaded = {}

    def load(relpath: str) -> Config:
        if relpath not in loaded:
            loaded[relpath] = Config.fromfile(osp.join(config_dir, relpath))
        return loaded[relpath]

    return load


def plain(node):
    """ConfigDict/tuple tree -> plain dicts and lists (for comparisons)."""
    if hasattr(node, 'to_dict'):
        node = node.to_dict()
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def find_transforms(pipeline, transform_type) -> list:
    """Transforms of a type in a pipeline, MultiBranch branches included."""
    found = []
    for transform in pipeline:
        if transform.get('type') == transform_type:
            found.append(transform)
        for branch in transform.get('branches', {}).values():
            found += find_transforms(branch, transform_type)
    return found


def differences(a, b, path: str = '') -> list:
    """Dotted paths where ``a`` and ``b`` differ (lists of one length are
    compared item by item, ``[i]`` in the path)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f'{path}.{key}' if path else str(key)
            if key not in a or key not in b:
                found.append(sub)
            else:
                found += differences(a[key], b[key], sub)
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p for i, (x, y) in enumerate(zip(a, b))
            for p in differences(x, y, f'{path}[{i}]')
        ]
    return [] if a == b else [path]


def leaf_datasets(dataset) -> list:
    """The mmseg datasets inside (possibly nested) dataset wrappers."""
    if 'datasets' in dataset:
        return [d for sub in dataset['datasets'] for d in leaf_datasets(sub)]
    if 'dataset' in dataset:
        return leaf_datasets(dataset['dataset'])
    return [dataset]


def camvid_mean_teacher_checkpoint(path: str) -> str:
    """The CamVid mean-teacher config's model with random weights moved so
    that teacher and student differ and predict a few classes, saved as
    mmengine's runner does (CamVid's classes and palette in the meta)."""
    from mmseg.registry import MODELS
    from mmseg_semi.datasets.camvid import CamVidDataset
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(MEAN_TEACHER_CONFIG).model)
    with torch.no_grad():
        for seed, network in enumerate((model.teacher, model.student), 1):
            generator = torch.Generator().manual_seed(seed)
            for name, tensor in network.state_dict().items():
                if tensor.is_floating_point():
                    tensor.add_(0.1 * torch.randn(
                        tensor.shape, generator=generator))
                    if name.endswith('running_var'):
                        tensor.abs_().add_(0.5)
    meta = dict(dataset_meta=dict(
        classes=list(CamVidDataset.METAINFO['classes']),
        palette=[list(c) for c in CamVidDataset.METAINFO['palette']]))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
    return path
