"""Every config under configs/: it parses, is named in mmseg's style and its
model builds; the U2PL-setting DeepLabV3+ R-101 configs (VOC classic/blender,
Cityscapes; supervised and mean teacher) follow the paper's settings and
train one step on a tiny input.

The R-101 configs are meant for 8 GPUs; here SyncBN becomes BN, ImageNet
weights are not loaded (building a model does not load them anyway) and the
forward/backward runs on 2 images of 65x65.
"""
import gc
import glob
import json
import math
import os
import os.path as osp
import re

import pytest
import torch
from helpers import (CONFIG_DIR, REPO_ROOT,  # noqa: F401
                     config_environment, config_loader, find_transforms,
                     leaf_datasets, plain)
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import PixelData

from mmseg.models import SegDataPreProcessor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg_semi.utils.device_config import GPU_ONLY_NORMS, replace_norm_types

os.environ.setdefault(
    'MMSEG_SEMI_CAMVID_ROOT',
    osp.normpath(osp.join(REPO_ROOT, '..', 'shared', 'data', 'camvid')))

ALL_CONFIGS = sorted(
    osp.relpath(path, CONFIG_DIR)
    for path in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True))
# Runnable configs: everything but the _base_ fragments.
RUN_CONFIGS = [p for p in ALL_CONFIGS if not p.startswith('_base_' + os.sep)]

# {algorithm}_{model}_{gpus}xb{batch}-{schedule}_{dataset}-{split}-{HxW}
NAME_PATTERN = re.compile(
    r'_(?P<gpus>\d+)xb(?P<batch>\d+)-(?P<schedule>[0-9a-z.]+)_'
    r'(?P<dataset>[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*)-'
    r'(?P<split>\d+-\d+|full)-(?P<height>\d+)x(?P<width>\d+)')
DATASET_TYPES = {
    'camvid': 'CamVidDataset',
    'voc12': 'PascalVOCDataset',
    'cityscapes': 'CityscapesDataset',
    'ccp': 'CCPDataset',
}

# The U2PL paper's setting (Sec. 4.1, checked against its released
# experiments/*/config.yaml): batch 16 = 8 GPUs x 2, SGD with momentum 0.9
# and poly decay (power 0.9), epochs converted to iterations with ceil(N / 16)
# per epoch, N = labeled images (SupOnly) or total - labeled (mean teacher:
# U2PL resamples both lists to that size).
U2PL = {
    'voc12-classic':
    dict(
        epochs=80,
        crop=(513, 513),
        lr=0.001,
        weight_decay=0.0001,
        head_lr_mult=10.,
        num_classes=21,
        total=10582,
        labeled={
            '1-16': 92,
            '1-8': 183,
            '1-4': 366,
            '1-2': 732,
            'full': 1464
        },
        sup_only_epochs=1,
        split_dir='splits/voc-classic'),
    'voc12-blender':
    dict(
        epochs=80,
        crop=(513, 513),
        lr=0.001,
        weight_decay=0.0001,
        head_lr_mult=10.,
        num_classes=21,
        total=10582,
        labeled={
            '1-16': 662,
            '1-8': 1323,
            '1-4': 2646,
            '1-2': 5291
        },
        sup_only_epochs=1,
        split_dir='splits/voc-blender'),
    'cityscapes':
    dict(
        epochs=200,
        crop=(769, 769),
        lr=0.01,
        weight_decay=0.0005,
        head_lr_mult=None,
        num_classes=19,
        total=2975,
        labeled={
            '1-16': 186,
            '1-8': 372,
            '1-4': 744,
            '1-2': 1488
        },
        sup_only_epochs=0,
        split_dir='splits/cityscapes'),
}
SCHEDULES = {'voc12-classic': '80e', 'voc12-blender': '80e',
             'cityscapes': '200e'}
METHODS = {'supervised': '', 'mean_teacher': 'mean-teacher_'}
U2PL_CONFIGS = [
    osp.join(method, f'{prefix}deeplabv3plus_r101-d8_8xb2-'
             f'{SCHEDULES[dataset]}_{dataset}-{split}-{h}x{w}.py')
    for method, prefix in METHODS.items()
    for dataset, setting in U2PL.items()
    for split in setting['labeled'] for h, w in [setting['crop']]
]
# One config per family for the forward/backward check.
TRAIN_STEP_CONFIGS = [
    p for p in U2PL_CONFIGS if re.search(r'-(1-8)-\d+x\d+\.py$', p)
]
OHEM = dict(type='OHEMPixelSampler', thresh=0.7, min_kept=50000)
# 65 = 8 * 8 + 1 pixels, like the 513 and 769 crops, suits align_corners.
INPUT_SIZE = 65


load = config_loader(CONFIG_DIR)


def drop_remote_weights(node) -> None:
    """No ImageNet downloads: drop `pretrained`/`init_cfg` URLs in place."""
    if isinstance(node, dict):
        if isinstance(node.get('pretrained'), str) \
                and '://' in node['pretrained']:
            node['pretrained'] = None
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and '://' in str(
                init_cfg.get('checkpoint', '')):
            node['init_cfg'] = None
        for value in node.values():
            drop_remote_weights(value)
    elif isinstance(node, list):
        for value in node:
            drop_remote_weights(value)


def buildable_model_cfg(cfg: Config) -> dict:
    model = plain(cfg.model)
    replace_norm_types(model, GPU_ONLY_NORMS)
    drop_remote_weights(model)
    return model


def structure_key(model_cfg: dict) -> str:
    """Models differing only in the warm-up length or in RML's stage-2
    checkpoint (read in init_weights) build the same modules."""
    model_cfg = dict(model_cfg)
    model_cfg.pop('unsup_start_iter', None)
    model_cfg.pop('stage2_init', None)
    return json.dumps(model_cfg, sort_keys=True, default=str)


# The last model built, reused while consecutive tests share its structure.
# Only one is held: keeping every distinct R-101 segmentor alive took the
# suite's process past 9 GB.
_LAST_MODEL = {}


@pytest.fixture(scope='module', autouse=True)
def release_last_model():
    yield
    _LAST_MODEL.clear()
    gc.collect()


def build(relpath: str):
    """Build the config's model, or reuse the previous test's if it has the
    same structure."""
    model_cfg = buildable_model_cfg(load(relpath))
    key = structure_key(model_cfg)
    if key not in _LAST_MODEL:
        _LAST_MODEL.clear()
        gc.collect()  # free the previous model before building the next
        _LAST_MODEL[key] = MODELS.build(model_cfg)
    model = _LAST_MODEL[key]
    if 'unsup_start_iter' in model_cfg:
        model.unsup_start_iter = model_cfg['unsup_start_iter']
    return model


def unlabeled_dataloader(cfg: Config):
    return cfg.train_cfg.get('unlabeled_dataloader')


def segmentor_cfg(cfg: Config):
    model = cfg.model
    return model.segmentor if 'segmentor' in model else model


# ---------------------------------------------------------------- all configs
def test_configs_found():
    assert RUN_CONFIGS, f'no configs under {CONFIG_DIR}'
    missing = [p for p in U2PL_CONFIGS if p not in RUN_CONFIGS]
    assert not missing, f'missing U2PL-setting configs: {missing}'


@pytest.mark.parametrize('relpath', ALL_CONFIGS)
def test_config_parses(relpath):
    cfg = load(relpath)
    if relpath in RUN_CONFIGS:
        assert 'model' in cfg and 'train_dataloader' in cfg
        assert 'mmseg_semi' in cfg.get('custom_imports', {}).get('imports', [])
        assert cfg.train_cfg.get('max_iters', 0) > 0


@pytest.mark.parametrize('relpath', RUN_CONFIGS)
def test_config_name(relpath):
    """Name says batch, dataset, split and crop, and they match the config."""
    name = osp.basename(relpath)
    match = NAME_PATTERN.search(name)
    assert match, (f'{name}: expected mmseg naming {{algorithm}}_{{model}}_'
                   '{gpus}xb{batch}-{schedule}_{dataset}-{split}-{H}x{W}')
    cfg = load(relpath)
    loaders = [cfg.train_dataloader]
    if unlabeled_dataloader(cfg) is not None:
        loaders.append(unlabeled_dataloader(cfg))
    for loader in loaders:
        assert loader.batch_size == int(match['batch'])
    labeled = leaf_datasets(cfg.train_dataloader.dataset)
    family = match['dataset'].split('-')[0]
    if family in DATASET_TYPES:
        assert {d.type for d in labeled} == {DATASET_TYPES[family]}
    if match['split'] != 'full':
        for dataset in labeled:
            # CamVid/VOC/Cityscapes splits: .../1-8_seed0/labeled.txt;
            # CCP's (its release): splits/labeled_1of8.txt.
            of_form = match['split'].replace('-', 'of')
            assert re.search(rf'(^|/){match["split"]}(_|/)|_{of_form}\.',
                             dataset.ann_file), (
                                 f'{name}: labeled split {dataset.ann_file}')
    crop = (int(match['height']), int(match['width']))
    for dataset in labeled:
        for crop_op in find_transforms(
                dataset.get('pipeline', []), 'RandomCrop'):
            assert tuple(crop_op.crop_size) == crop


@pytest.mark.parametrize('relpath', RUN_CONFIGS)
def test_model_builds(relpath):
    model = build(relpath)
    assert isinstance(model, torch.nn.Module)
    if 'segmentor' in load(relpath).model:
        for teacher in model.teachers():
            assert not any(p.requires_grad for p in teacher.parameters())


# ------------------------------------------------------ U2PL-setting configs
def parse_u2pl_name(relpath):
    match = re.search(
        r'(?P<dataset>voc12-classic|voc12-blender|cityscapes)-'
        r'(?P<split>[0-9-]+|full)-\d+x\d+\.py$', relpath)
    return match['dataset'], match['split']


def expected_iterations(dataset, split, semi):
    """(iterations per epoch, max_iters) from U2PL's epoch definition."""
    setting = U2PL[dataset]
    labeled = setting['labeled'][split]
    images = setting['total'] - labeled if semi else labeled
    per_epoch = math.ceil(images / 16)
    return per_epoch, setting['epochs'] * per_epoch


@pytest.mark.parametrize('relpath', U2PL_CONFIGS)
def test_u2pl_network(relpath):
    dataset, _ = parse_u2pl_name(relpath)
    setting = U2PL[dataset]
    cfg = load(relpath)
    segmentor = segmentor_cfg(cfg)
    assert segmentor.pretrained == 'open-mmlab://resnet101_v1c'
    backbone = segmentor.backbone
    assert backbone.type == 'ResNetV1c' and backbone.depth == 101
    # Output stride 8, U2PL's multi-grid last stage.
    assert tuple(backbone.strides) == (1, 2, 1, 1)
    assert tuple(backbone.dilations) == (1, 1, 2, 4)
    assert tuple(backbone.multi_grid) == (1, 2, 4)
    head = segmentor.decode_head
    assert head.type == 'DepthwiseSeparableASPPHead'
    assert tuple(head.dilations) == (1, 12, 24, 36)
    # U2PL's losses: the mean cross-entropy over the labeled pixels (the
    # pixels OHEM keeps on Cityscapes); an auxiliary FCN head (weight 0.4)
    # on Cityscapes only, as experiments/*/config.yaml.
    heads = [head]
    if dataset == 'cityscapes':
        aux = segmentor.auxiliary_head
        assert aux.loss_decode.loss_weight == 0.4
        heads.append(aux)
    else:
        assert segmentor.auxiliary_head is None
        assert head.get('sampler') is None
    for decode in heads:
        assert decode.num_classes == setting['num_classes']
        assert decode.align_corners is True
        assert decode.loss_decode.type == 'ClassWeightedCrossEntropyLoss'
        assert decode.loss_decode.get('class_weight') is None
        if dataset == 'cityscapes':
            assert plain(decode.sampler) == OHEM
    for part in [backbone] + heads:
        assert part.norm_cfg.type == 'SyncBN'
    assert tuple(segmentor.data_preprocessor.size) == setting['crop']
    if dataset == 'cityscapes':
        assert plain(segmentor.test_cfg) == dict(
            mode='slide', crop_size=[769, 769], stride=[513, 513])
    else:
        assert segmentor.test_cfg.mode == 'whole'


@pytest.mark.parametrize('relpath', U2PL_CONFIGS)
def test_u2pl_schedule(relpath):
    dataset, split = parse_u2pl_name(relpath)
    setting = U2PL[dataset]
    cfg = load(relpath)
    semi = 'segmentor' in cfg.model
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'SGD'
    assert optim.optimizer.lr == setting['lr']
    assert optim.optimizer.momentum == 0.9
    assert optim.optimizer.weight_decay == setting['weight_decay']
    custom_keys = plain(optim.get('paramwise_cfg', {})).get('custom_keys', {})
    if setting['head_lr_mult'] is None:
        assert not custom_keys
    else:
        assert custom_keys == {
            'decode_head': dict(lr_mult=setting['head_lr_mult'])
        }
    per_epoch, max_iters = expected_iterations(dataset, split, semi)
    assert cfg.train_cfg.max_iters == max_iters
    [poly] = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.power == 0.9
    assert poly.eta_min == 0 and poly.by_epoch is False
    assert poly.get('end', max_iters) == max_iters
    if semi:
        assert cfg.model.unsup_start_iter == \
            setting['sup_only_epochs'] * per_epoch


@pytest.mark.parametrize('relpath', U2PL_CONFIGS)
def test_u2pl_data(relpath):
    dataset, split = parse_u2pl_name(relpath)
    setting = U2PL[dataset]
    cfg = load(relpath)
    # Batch 16 = 8 GPUs x 2, labeled and unlabeled.
    assert '_8xb2-' in relpath and cfg.train_dataloader.batch_size == 2
    [labeled] = leaf_datasets(cfg.train_dataloader.dataset)
    split_dir = f'{setting["split_dir"]}/{split}_seed0'
    if split == 'full':
        assert labeled.ann_file == 'ImageSets/Segmentation/train.txt'
    else:
        assert labeled.ann_file == f'{split_dir}/labeled.txt'
    if dataset != 'cityscapes':
        masks = dict(
            classic='SegmentationClass', blender='SegmentationClassAug')
        assert labeled.data_prefix.seg_map_path == \
            masks[dataset.split('-')[1]]
    [crop] = find_transforms(labeled.pipeline, 'RandomCrop')
    assert tuple(crop.crop_size) == setting['crop']
    [resize] = find_transforms(labeled.pipeline, 'RandomResize')
    assert tuple(resize.ratio_range) == (0.5, 2.0)
    if 'segmentor' not in cfg.model:
        return
    loader = unlabeled_dataloader(cfg)
    assert loader.batch_size == 2
    unlabeled = leaf_datasets(loader.dataset)
    ann_files = [d.ann_file for d in unlabeled]
    if dataset == 'voc12-classic':
        # U2PL's classic protocol: every other train_aug image is unlabeled.
        expected = [] if split == 'full' else [f'{split_dir}/unlabeled.txt']
        assert ann_files == expected + ['ImageSets/Segmentation/aug.txt']
    else:
        assert ann_files == [f'{split_dir}/unlabeled.txt']
    for data in unlabeled:
        assert data.data_root == labeled.data_root
        assert 'seg_map_path' not in data.data_prefix
        assert find_transforms(data.pipeline, 'LoadAnnotations') == []
        [crop] = find_transforms(data.pipeline, 'RandomCrop')
        assert tuple(crop.crop_size) == setting['crop']
        assert crop.cat_max_ratio == 1.0
        multi_branch = data.pipeline[-1]
        assert multi_branch.type == 'MultiBranch'
        assert set(multi_branch.branches) == {'weak', 'strong'}


@pytest.mark.parametrize(
    'relpath', [p for p in U2PL_CONFIGS if p.startswith('mean_teacher')])
def test_u2pl_mean_teacher(relpath):
    cfg = load(relpath)
    model = cfg.model
    assert model.type == 'MeanTeacherSegmentor'
    # The paper's batch-wide entropy quantile on the raw softmax.
    assert plain(model.pseudo_labeler) == dict(
        type='EntropyPseudoLabeler', alpha_0=0.2, class_wise=False)
    assert model.class_balance is None
    assert model.cutmix.prob == 0.5
    assert plain(cfg.custom_hooks) == [
        dict(type='EMATeacherHook', decay=0.99, warmup=True)
    ]
    # The semi loops, and that the method changes nothing in the network,
    # the data or the optimiser: test_recipes.py.


# ------------------------------------------------- a training step, 65x65
def tiny_sample(labeled: bool, num_classes: int) -> SegDataSample:
    size = (INPUT_SIZE, INPUT_SIZE)
    sample = SegDataSample(
        metainfo=dict(img_shape=size, ori_shape=size, pad_shape=size))
    if labeled:
        label = torch.randint(0, num_classes, (1, *size))
        label[:, :4] = 255  # some ignored pixels
        sample.gt_sem_seg = PixelData(data=label)
    return sample


def tiny_batch(semi: bool, num_classes: int) -> dict:
    def images():
        return [
            torch.randint(0, 256, (3, INPUT_SIZE, INPUT_SIZE),
                          dtype=torch.uint8) for _ in range(2)
        ]

    labeled = dict(
        inputs=images(),
        data_samples=[tiny_sample(True, num_classes) for _ in range(2)])
    if not semi:
        return labeled
    weak = images()
    return dict(
        labeled=labeled,
        unlabeled=dict(
            inputs=dict(weak=weak, strong=[img.flip(-1) for img in weak]),
            data_samples=dict(
                weak=[tiny_sample(False, num_classes) for _ in range(2)],
                strong=[tiny_sample(False, num_classes) for _ in range(2)])))


@pytest.mark.parametrize('relpath', TRAIN_STEP_CONFIGS)
def test_u2pl_train_step(relpath):
    """Finite losses and gradients down to the stem, on 2 images of 65x65."""
    dataset, _ = parse_u2pl_name(relpath)
    num_classes = U2PL[dataset]['num_classes']
    cfg = load(relpath)
    semi = 'segmentor' in cfg.model
    model = build(relpath)
    # Pad to the tiny input instead of the 513/769 crop.
    for module in model.modules():
        if isinstance(module, SegDataPreProcessor):
            module.size = (INPUT_SIZE, INPUT_SIZE)
    model.train()
    model.zero_grad(set_to_none=True)
    if semi:
        model.set_train_progress(model.unsup_start_iter,
                                 cfg.train_cfg.max_iters)
    torch.manual_seed(0)
    data = model.data_preprocessor(tiny_batch(semi, num_classes), True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    with_aux = dataset == 'cityscapes'
    expected = {'decode.loss_ce', 'aux.loss_ce'} if with_aux \
        else {'decode.loss_ce'}
    if semi:
        expected = {f'sup_{key}' for key in expected} | {'unsup_loss_ce'}
    assert expected <= set(log_vars)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v.detach()).all() for v in log_vars.values())
    loss.backward()
    student = model.student if semi else model
    stem_grad = student.backbone.stem[0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0
    assert student.with_auxiliary_head == with_aux
    heads = [student.decode_head]
    if with_aux:
        heads.append(student.auxiliary_head)
    for head in heads:
        assert head.conv_seg.weight.grad.abs().sum() > 0
    if semi:
        assert all(p.grad is None for p in model.teacher.parameters())
    # The optimiser gives the heads U2PL's learning rate multiplier.
    setting = U2PL[dataset]
    lrs = {}
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            if param.requires_grad:
                # 'backbone...' or, in a mean teacher, 'student.backbone...'
                part = names[id(param)].split('.')[1 if semi else 0]
                lrs.setdefault(part, set()).add(group['lr'])
    head_lr = setting['lr'] * (setting['head_lr_mult'] or 1)
    expected_lrs = {'backbone': {setting['lr']}, 'decode_head': {head_lr}}
    if with_aux:
        expected_lrs['auxiliary_head'] = {head_lr}
    assert lrs == expected_lrs
