"""RML's paper-setting configs: DeepLabv2 ResNet-101 students on Cityscapes
(1/30, 1/8, 1/4) and PASCAL VOC train_aug (1/100, 1/50, 1/20, 1/8), two
stages each, a DeepLabv2 + SETR heterogeneous pair, and the ablation
configs of the paper's Table 4 (Cityscapes 1/8) and Table 5 (IML with the
heterogeneous pair).

Every config parses and carries the settings below (Sec. 5.2: 90k
iterations at batch 4 on Cityscapes, 60k at batch 10 on VOC, per stage;
the strong view is RandAugment's photometric ops plus CutMix); each
ablation config is its full RML config but for what its row leaves out.
One homogeneous, the heterogeneous and the IML config are built in full
(four networks, SyncBN as BN, no ImageNet download) and run one training
step on 2 images of 32x32.
"""
import glob
import os.path as osp
import re
from fractions import Fraction

import pytest
import torch
from helpers import (CONFIG_DIR, config_loader, differences, find_transforms,
                     load_script, plain, tiny_labeled_samples)
from mmengine.config import Config, ConfigDict
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import mmseg_semi  # noqa: F401
from mmseg_semi.utils.device_config import GPU_ONLY_NORMS, replace_norm_types

register_all_modules(init_default_scope=True)

RML_DIR = osp.join(CONFIG_DIR, 'rml')
PREFIX = 'rml_deeplabv2_r101-d8_'
HETERO = ('rml_deeplabv2_r101-d8_setr-pup_vit-b16_2xb2-90k_'
          'cityscapes-1-30-256x512')
# The paper's settings as the configs implement them; labeled counts are
# ceil(fraction * pool), what make_semi_splits.py writes. Schedule (Sec.
# 5.2): max_iters per stage at `batch` labeled images per step (with as
# many unlabeled ones), split over `gpus` GPUs as the names say.
DATASETS = {
    'cityscapes':
    dict(
        crop=(256, 512),
        num_classes=19,
        pool=2975,
        labeled={'1-30': 100, '1-8': 372, '1-4': 744},
        split_dir='splits/cityscapes',
        tool_dataset='cityscapes',
        dataset_type='CityscapesDataset',
        max_iters=90000,
        batch=4,
        gpus=2),
    'voc12-blender':
    dict(
        crop=(321, 321),
        num_classes=21,
        pool=10582,
        labeled={'1-100': 106, '1-50': 212, '1-20': 530, '1-8': 1323},
        split_dir='splits/voc-blender',
        tool_dataset='voc-blender',
        dataset_type='PascalVOCDataset',
        max_iters=60000,
        batch=10,
        gpus=2),
}


def schedule_tag(setting) -> str:
    """mmseg's {gpus}xb{batch per GPU}-{iterations} name part."""
    per_gpu = setting['batch'] // setting['gpus']
    return f'{setting["gpus"]}xb{per_gpu}-{setting["max_iters"] // 1000}k'


STAGE1 = [(f'{PREFIX}{schedule_tag(s)}_{dataset}-{split}-'
           f'{s["crop"][0]}x{s["crop"][1]}', dataset, split)
          for dataset, s in DATASETS.items() for split in s['labeled']]
STAGE2 = [(name + '_stage2', dataset, split)
          for name, dataset, split in STAGE1]
ALL = STAGE1 + STAGE2 + [(HETERO, 'cityscapes', '1-30')]
IDS = [name for name, _, _ in ALL]
# Table 4's rows on Cityscapes 1/8 and Table 5's IML heterogeneous pair:
# ablation config -> (its full RML config, the model keys it changes,
# whether it removes the input noise (RandAugment; CutMix stays)).
TABLE4_BASE = f'{PREFIX}2xb2-90k_cityscapes-1-8-256x512'
NO_NOISE = ('student1_noise', 'student2_noise')
ABLATIONS = {
    'rml-iml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-256x512':
    (TABLE4_BASE, NO_NOISE + ('rectifier', ), True),
    'rml-iml-model-noise_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-256x512':
    (TABLE4_BASE, ('rectifier', ), True),
    'rml-iml-model-input-noise_deeplabv2_r101-d8_2xb2-90k_'
    'cityscapes-1-8-256x512': (TABLE4_BASE, ('rectifier', ), False),
    'rml-iml_deeplabv2_r101-d8_setr-pup_vit-b16_2xb2-90k_'
    'cityscapes-1-30-256x512':
    (HETERO,
     NO_NOISE + ('rectifier', 'segmentor2.backbone.drop_path_rate'), True),
}
# RML's input noise (the student's strong view): RandAugment's photometric
# ops, then the segmentor's CutMix.
RAND_AUGMENT = dict(
    type='RandAugmentPhotometric', num_ops=2, magnitude_range=[0.0, 1.0])
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]
TINY = 32


def load_split_tool():
    """tools/ is not a package: import make_semi_splits.py by path."""
    return load_script('tools', 'dataset_converters', 'make_semi_splits.py')


_load = config_loader(RML_DIR)


def load(name: str) -> Config:
    """Parse a config once per module (tests must not modify it)."""
    return _load(name + '.py')


# ------------------------------------------------------------ every config
def test_exactly_the_expected_configs_exist():
    found = {
        osp.splitext(osp.basename(path))[0]
        for path in glob.glob(osp.join(RML_DIR, '*deeplabv2*.py'))
    }
    assert found == set(IDS) | set(ABLATIONS)


@pytest.mark.parametrize('name,dataset,split', ALL, ids=IDS)
def test_network(name, dataset, split):
    setting = DATASETS[dataset]
    model = load(name).model
    assert model.type == 'DualStudentSegmentor'
    segmentors = [model.segmentor1]
    if name != HETERO:
        segmentors.append(model.segmentor2)
    for segmentor in segmentors:
        backbone = segmentor.backbone
        assert backbone.type == 'ResNetV1c' and backbone.depth == 101
        # Output stride 8.
        assert tuple(backbone.strides) == (1, 2, 1, 1)
        assert tuple(backbone.dilations) == (1, 1, 2, 4)
        assert plain(backbone.init_cfg) == dict(
            type='Pretrained', checkpoint='open-mmlab://resnet101_v1c')
        head = segmentor.decode_head
        assert head.type == 'DeepLabV2Head'
        assert tuple(head.dilations) == (6, 12, 18, 24)
        assert head.in_channels == 2048 and head.in_index == 3
        assert head.dropout_ratio == 0.0
        assert 'auxiliary_head' not in segmentor
    for segmentor in (model.segmentor1, model.segmentor2):
        assert segmentor.decode_head.num_classes == setting['num_classes']
        preprocessor = segmentor.data_preprocessor
        assert tuple(preprocessor.size) == setting['crop']
        assert list(preprocessor.mean) == IMAGENET_MEAN
        assert list(preprocessor.std) == IMAGENET_STD
    assert tuple(model.data_preprocessor.size) == setting['crop']
    assert plain(model.student1_noise) == dict(dropout=0.5, drop_path=0.2)
    assert plain(model.rectifier) == dict(
        type='PrototypeRectifier', momentum=0.9999)
    assert plain(model.pseudo_labeler) == dict(
        type='ConfidencePseudoLabeler', threshold=0.0)
    assert model.cutmix.prob == 1.0


@pytest.mark.parametrize('name,dataset,split', ALL, ids=IDS)
def test_schedule(name, dataset, split):
    """Sec. 5.2's iterations per stage, SGD with poly decay."""
    max_iters = DATASETS[dataset]['max_iters']
    cfg = load(name)
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'SGD'
    assert optimizer.lr == 1e-4
    assert optimizer.momentum == 0.9
    assert optimizer.weight_decay == 5e-4
    assert cfg.train_cfg.max_iters == max_iters
    [poly] = cfg.param_scheduler
    assert poly.type == 'PolyLR' and poly.power == 0.9
    assert poly.eta_min == 0.0 and poly.by_epoch is False
    assert poly.begin == 0 and poly.end == max_iters
    assert plain(cfg.custom_hooks) == [
        dict(type='EMATeacherHook', decay=0.999, warmup=True)
    ]
    # The semi loops and the teacher's 'best' checkpoint: test_recipes.py.


@pytest.mark.parametrize('name,dataset,split', ALL, ids=IDS)
def test_data(name, dataset, split):
    setting = DATASETS[dataset]
    cfg = load(name)
    # The name says GPUs x images per GPU, iterations, the split and the
    # (h, w) crop.
    match = re.search(r'_(?P<gpus>\d+)xb(?P<batch>\d+)-(?P<iters>\d+)k_'
                      r'(?P<dataset>[a-z0-9-]+?)-(?P<split>\d+-\d+)'
                      r'-(?P<h>\d+)x(?P<w>\d+)(_stage2)?$', name)
    assert match, name
    assert (match['dataset'], match['split']) == (dataset, split)
    assert (int(match['h']), int(match['w'])) == setting['crop']
    assert int(match['iters']) * 1000 == cfg.train_cfg.max_iters
    labeled = cfg.train_dataloader
    unlabeled = cfg.train_cfg.unlabeled_dataloader
    # Sec. 5.2's batch: labeled images per step (GPUs x per GPU), with as
    # many unlabeled ones.
    assert int(match['gpus']) == setting['gpus']
    assert labeled.batch_size == unlabeled.batch_size == int(match['batch'])
    assert int(match['gpus']) * labeled.batch_size == setting['batch']
    split_dir = f'{setting["split_dir"]}/{split}_seed0'
    assert labeled.dataset.ann_file == f'{split_dir}/labeled.txt'
    assert unlabeled.dataset.ann_file == f'{split_dir}/unlabeled.txt'
    for data in (labeled.dataset, unlabeled.dataset,
                 cfg.val_dataloader.dataset):
        assert data.type == setting['dataset_type']
    assert unlabeled.dataset.data_root == labeled.dataset.data_root
    assert 'seg_map_path' not in unlabeled.dataset.data_prefix
    assert find_transforms(unlabeled.dataset.pipeline,
                           'LoadAnnotations') == []
    assert set(unlabeled.dataset.pipeline[-1].branches) == {'weak', 'strong'}
    for pipeline in (labeled.dataset.pipeline, unlabeled.dataset.pipeline):
        [crop] = find_transforms(pipeline, 'RandomCrop')
        assert tuple(crop.crop_size) == setting['crop']
        assert find_transforms(pipeline, 'PhotoMetricDistortion') == []
    test_pipeline = cfg.val_dataloader.dataset.pipeline
    if dataset == 'cityscapes':
        # Every image at 1024x512 (w, h), for training and testing.
        for pipeline in (labeled.dataset.pipeline,
                         unlabeled.dataset.pipeline, test_pipeline):
            [resize] = find_transforms(pipeline, 'Resize')
            assert tuple(resize.scale) == (1024, 512) and resize.keep_ratio
    else:
        assert labeled.dataset.data_prefix.seg_map_path == \
            'SegmentationClassAug'
        # The image scaled by a factor in [0.5, 1.5].
        for pipeline in (labeled.dataset.pipeline,
                         unlabeled.dataset.pipeline):
            [resize] = find_transforms(pipeline, 'RandomResize')
            assert tuple(resize.scale) == (500, 500)
            assert tuple(resize.ratio_range) == (0.5, 1.5)
        # Tested at the original size.
        assert [t.type for t in test_pipeline] == [
            'LoadImageFromFile', 'LoadAnnotations', 'PackSegInputs'
        ]


@pytest.mark.parametrize('name,dataset,split', ALL, ids=IDS)
def test_input_noise_is_rand_augment_and_cutmix(name, dataset, split):
    """The student's strong view: RandAugment's photometric ops only (the
    weak view's geometry, no colour jitter, greyscale or blur), then
    CutMix in the segmentor; the teacher's weak view is the plain crop."""
    cfg = load(name)
    multi_branch = cfg.train_cfg.unlabeled_dataloader.dataset.pipeline[-1]
    assert multi_branch.type == 'MultiBranch'
    assert plain(multi_branch.branches) == dict(
        weak=[dict(type='PackSegInputs')],
        strong=[RAND_AUGMENT, dict(type='PackSegInputs')])
    assert plain(cfg.model.cutmix) == dict(prob=1.0)


# ---------------------------------------------------------------- stages
@pytest.mark.parametrize('name,dataset,split', STAGE1,
                         ids=[name for name, _, _ in STAGE1])
def test_stage1_has_a_warm_up_and_no_stage2_init(name, dataset, split):
    model = load(name).model
    assert model.get('stage2_init') is None
    assert model.unsup_start_iter == 2000
    # Stage 2 is stage 1 started from its last checkpoint: test_recipes.py.


@pytest.mark.parametrize('name,dataset,split', STAGE2,
                         ids=[name for name, _, _ in STAGE2])
def test_stage2_starts_from_the_last_stage1_checkpoint(name, dataset, split):
    """A warm restart from stage 1's teachers and prototypes, no warm-up,
    the same schedule length per stage (Sec. 5.2)."""
    model = load(name).model
    stage1 = name[:-len('_stage2')]
    max_iters = DATASETS[dataset]['max_iters']
    assert plain(model.stage2_init) == dict(
        checkpoint=f'work_dirs/{stage1}/iter_{max_iters}.pth',
        load_rectifiers=True)
    assert model.unsup_start_iter == 0
    assert load(name).train_cfg.max_iters == max_iters


# ------------------------------------------------------------- ablations

@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_is_its_rml_config_less_its_rows_parts(name):
    """The model differs from the full RML config's only in the keys the
    row removes (each set to None, or the ViT's stochastic depth to 0);
    the data only in the strong view (RandAugment removed: the student
    sees the weak view, CutMix kept); nothing else differs."""
    base_name, model_keys, no_input_noise = ABLATIONS[name]
    ablation, base = plain(load(name)), plain(load(base_name))
    model, base_model = ablation.pop('model'), base.pop('model')
    assert sorted(differences(model, base_model)) == sorted(model_keys)
    for key in model_keys:
        if key == 'segmentor2.backbone.drop_path_rate':
            assert model['segmentor2']['backbone']['drop_path_rate'] == 0.0
        else:
            assert model[key] is None, key
    assert model['cutmix'] == dict(prob=1.0)
    # The config's helper variable for the pipeline is not a runner key.
    ablation.pop('unlabeled_pipeline')
    base.pop('unlabeled_pipeline')
    strong = ('train_cfg.unlabeled_dataloader.dataset.pipeline[4]'
              '.branches.strong')
    assert differences(ablation, base) == ([strong]
                                           if no_input_noise else [])
    branches = ablation['train_cfg']['unlabeled_dataloader']['dataset'][
        'pipeline'][4]['branches']
    expected = [dict(type='PackSegInputs')] if no_input_noise else [
        RAND_AUGMENT, dict(type='PackSegInputs')
    ]
    assert branches['strong'] == expected
    assert branches['weak'] == [dict(type='PackSegInputs')]


def test_ablation_rows_add_one_part_each():
    """Table 4's rows, each the previous one plus one part: IML, + model
    noise, + input noise, + self-rectification (the full config)."""
    rows = [
        'rml-iml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-256x512',
        'rml-iml-model-noise_deeplabv2_r101-d8_2xb2-90k_'
        'cityscapes-1-8-256x512',
        'rml-iml-model-input-noise_deeplabv2_r101-d8_2xb2-90k_'
        'cityscapes-1-8-256x512', TABLE4_BASE
    ]
    configs = [plain(load(row)) for row in rows]
    for config in configs:
        config.pop('unlabeled_pipeline')
    strong = ('train_cfg.unlabeled_dataloader.dataset.pipeline[4]'
              '.branches.strong')
    added = [['model.student1_noise', 'model.student2_noise'], [strong],
             ['model.rectifier']]
    for before, after, parts in zip(configs, configs[1:], added):
        assert differences(after, before) == parts


# ------------------------------------------------------------ split files
def test_split_tool_writes_the_configs_split_counts_and_dirs():
    tool = load_split_tool()
    for dataset, setting in DATASETS.items():
        for split, count in setting['labeled'].items():
            fraction = Fraction(*map(int, split.split('-')))
            assert tool.num_labeled(setting['pool'], fraction) == count
            assert tool.fraction_tag(fraction, 0) == f'{split}_seed0'
            assert tool.LAYOUTS[setting['tool_dataset']]


def test_split_tool_cli_on_a_fake_cityscapes_1_30(tmp_path):
    tool = load_split_tool()
    city = tmp_path / 'cityscapes' / 'leftImg8bit' / 'train' / 'aachen'
    city.mkdir(parents=True)
    for index in range(60):
        (city / f'aachen_{index:06d}_000019_leftImg8bit.png').touch()
    out_dir = tmp_path / 'splits'
    assert tool.main([
        '--dataset', 'cityscapes', '--root',
        str(tmp_path / 'cityscapes'), '--fraction', '1/30', '--out-dir',
        str(out_dir)
    ]) == 0
    cfg = load(STAGE1[0][0])
    ann_file = cfg.train_dataloader.dataset.ann_file
    split_dir = osp.basename(osp.dirname(ann_file))
    labeled = (out_dir / split_dir / 'labeled.txt').read_text().split()
    unlabeled = (out_dir / split_dir / 'unlabeled.txt').read_text().split()
    assert len(labeled) == 2 and len(unlabeled) == 58  # ceil(60 / 30) = 2
    assert labeled[0].startswith('aachen/aachen_')


# --------------------------------------------------------- full builds
def build_on_cpu(name: str):
    """The config's model without ImageNet weights, SyncBN as BN."""
    model_cfg = plain(load(name).model)
    replace_norm_types(model_cfg, GPU_ONLY_NORMS)
    for key in ('segmentor1', 'segmentor2'):
        model_cfg[key]['backbone'].pop('init_cfg', None)
        model_cfg[key].pop('pretrained', None)
    torch.manual_seed(0)
    # No init_weights: it would only re-draw the random weights (and copy
    # the students into the teachers), seconds for four large networks.
    return MODELS.build(ConfigDict(model_cfg))


def tiny_samples(num_classes, seed):
    return tiny_labeled_samples(2, seed, TINY, num_classes)


def one_training_step(model, num_classes):
    """Both students' losses on a normalised batch of 2 images, unsup
    active; returns the losses after backward."""
    generator = torch.Generator().manual_seed(0)
    inputs = {
        view: torch.randn(2, 3, TINY, TINY, generator=generator)
        for view in ('labeled', 'weak')
    }
    inputs['strong'] = inputs['weak'] * 0.8
    samples = {
        view: tiny_samples(num_classes, seed)
        for seed, view in enumerate(('labeled', 'weak', 'strong'))
    }
    model.train()
    model.set_train_progress(model.unsup_start_iter, 90000)
    losses = model.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    return losses


def test_voc_stage1_builds_and_trains_one_step():
    name = STAGE1[3][0]
    assert 'voc12-blender-1-100' in name
    model = build_on_cpu(name)
    num_classes = DATASETS['voc12-blender']['num_classes']
    for teacher, student in model.teacher_student_pairs():
        assert type(student.decode_head).__name__ == 'DeepLabV2Head'
        assert student.num_classes == num_classes
        assert student.backbone.depth == 101
        assert not teacher.training
    # RML's noise on the students: dropout 0.5, stochastic depth on the
    # ResNet's blocks (0.2 at the last one).
    assert model.student1.decode_head.dropout.p == 0.5
    assert model.student1.backbone.layer4[-1].residual_branch_drop \
        .drop_prob == pytest.approx(0.2)
    # Prototypes in the 2048-d backbone feature space.
    for rectifier in (model.rectifier1, model.rectifier2):
        assert rectifier.feat_channels == 2048
        assert rectifier.num_classes == num_classes
    losses = one_training_step(model, num_classes)
    assert {'sup1_decode.loss_ce', 'unsup1_own_loss_ce',
            'unsup2_peer_loss_ce'} <= set(losses)
    for student in (model.student1, model.student2):
        assert student.backbone.stem[0].weight.grad.abs().sum() > 0
        for branch in student.decode_head.conv_seg.branches:
            assert branch.weight.grad.abs().sum() > 0
    for teacher in model.teachers():
        assert all(p.grad is None for p in teacher.parameters())
    assert model.rectifier1.prototype_initialised.any()


def test_iml_ablation_builds_and_trains_one_step():
    """Table 4's IML: no dropout, no stochastic depth, no rectifier."""
    name = 'rml-iml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-256x512'
    model = build_on_cpu(name)
    for student in (model.student1, model.student2):
        assert student.decode_head.dropout is None
        assert not hasattr(student.backbone.layer4[-1],
                           'residual_branch_drop')
    assert getattr(model, 'rectifier1', None) is None
    assert getattr(model, 'rectifier2', None) is None
    losses = one_training_step(model, DATASETS['cityscapes']['num_classes'])
    assert {'unsup1_own_loss_ce', 'unsup2_peer_loss_ce'} <= set(losses)
    assert model.student1.backbone.stem[0].weight.grad.abs().sum() > 0


def test_heterogeneous_config_builds_and_trains_one_step():
    model = build_on_cpu(HETERO)
    assert type(model.student1.decode_head).__name__ == 'DeepLabV2Head'
    assert type(model.student2.backbone).__name__ == 'VisionTransformer'
    assert type(model.student2.decode_head).__name__ == 'SETRUPHead'
    assert model.student2.decode_head.dropout.p == 0.5
    # Each rectifier lives in its own teacher's feature space.
    assert model.rectifier1.feat_channels == 2048
    assert model.rectifier2.feat_channels == 256
    losses = one_training_step(model, DATASETS['cityscapes']['num_classes'])
    assert {'unsup2_own_loss_ce', 'unsup2_peer_loss_ce'} <= set(losses)
    assert model.student2.backbone.patch_embed.projection.weight.grad \
        .abs().sum() > 0
    assert model.rectifier2.prototype_initialised.any()
