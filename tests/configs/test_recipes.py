"""What must hold between the configs, rather than the values they hold.

- A method config is its supervised config (same dataset, split and
  network) plus the method's keys: the model wraps the supervised model,
  the semi loops, the hooks, the unlabeled loader; data, optimiser and
  runtime are the supervised config's.
- A composition config is the method config it starts from plus the part it
  composes; RML's stage-2 config is its stage-1 config started from the
  stage-1 run's last checkpoint.
- A method's CamVid and CCP configs share one recipe: they differ only in
  their data.
- The RML CamVid configs keep the mean-teacher baseline's pseudo-labels and
  unsupervised weight, and give their students milder noise than the paper.
- Every semi config trains with the semi loop, updates its teachers and
  validates with the teacher-student loop; its labeled and unlabeled splits
  partition the training set.

The paper settings themselves are checked value by value, with their
sources, in test_configs.py, test_u2pl_paper_configs.py and
test_rml_paper_configs.py.
"""
import glob
import inspect
import os
import os.path as osp
import re

import pytest
from mmengine.runner import Runner
from mmseg.registry import DATASETS

from helpers import (CONFIG_DIR, camvid_root, ccp_root,  # noqa: F401
                     config_environment, config_loader, differences,
                     leaf_datasets, plain)
from mmseg_semi.models.segmentors import MeanTeacherSegmentor

#: The keys a runner reads from a config (mmengine's Runner.from_cfg and
#: model wrapping); the others are helper variables that flow into them.
RUNNER_KEYS = (set(inspect.signature(Runner.__init__).parameters) -
               {'self', 'cfg'}) | {
                   'find_unused_parameters', 'model_wrapper_cfg',
                   'custom_imports'
               }
#: Where a method config may differ from its supervised config (dotted
#: paths; a path covers everything below it). The model is compared apart.
METHOD_PATHS = (
    'train_cfg.type',
    'train_cfg.unlabeled_dataloader',
    'val_cfg.type',
    'custom_hooks',
    # Which checkpoint is kept: the best teacher's, not the student's.
    'default_hooks.checkpoint.save_best',
    'default_hooks.checkpoint.rule',
    # U2PL: the representation head idles during the warm-up (DDP) and
    # belongs to the 10x decoder on VOC.
    'find_unused_parameters',
    'optim_wrapper.paramwise_cfg.custom_keys.rep_head',
)
#: U2PL counts its epochs over the unlabeled set, so its semi schedule is
#: longer than SupOnly's (test_configs.py checks both lengths).
U2PL_SETTING_PATHS = ('train_cfg.max_iters', )
METHOD_PREFIXES = {
    'mean_teacher': 'mean-teacher_',
    'u2pl': 'u2pl_',
    'rml': 'rml_',
}
#: RML's students get stochastic depth in the backbone (model noise).
RML_STUDENT_PATHS = ('backbone.drop_path_rate', )
#: A composition config -> the config it starts from and the keys it adds.
COMPOSITIONS = {
    'composition/rml_u2pl-contrast_deeplabv3plus_effnetlite0-d16_1xb4-1k_'
    'camvid-1-8-256x320.py':
    ('rml/rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
     ('model.rep_head', 'model.contrastive_loss', 'find_unused_parameters')),
    'composition/u2pl_prototype-rectifier_deeplabv3plus_effnetlite0-d16_'
    '1xb4-1k_camvid-1-8-256x320.py':
    ('u2pl/u2pl_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
     ('model.rectifier', )),
}
#: The paper's noise on RML's first student (RML Sec. 4.1; the paper
#: configs, test_rml_paper_configs.py).
RML_PAPER_NOISE = dict(dropout=0.5, drop_path=0.2)

ALL_CONFIGS = sorted(
    osp.relpath(path, CONFIG_DIR)
    for path in glob.glob(osp.join(CONFIG_DIR, '*', '*.py'))
    if not path.startswith(osp.join(CONFIG_DIR, '_base_')))


def supervised_twin(relpath: str):
    """The supervised config of a method config's dataset, split and
    network, or None."""
    method, name = osp.split(relpath)
    prefix = METHOD_PREFIXES.get(method)
    if prefix is None or not name.startswith(prefix) or 'stage2' in name:
        return None
    twin = osp.join('supervised', name[len(prefix):])
    return twin if osp.isfile(osp.join(CONFIG_DIR, twin)) else None


METHOD_CONFIGS = [p for p in ALL_CONFIGS if supervised_twin(p)]
STAGE2_CONFIGS = [p for p in ALL_CONFIGS if p.endswith('_stage2.py')]
#: The small-recipe configs: DeepLabV3+ EfficientNet-Lite0 on CamVid, CCP.
EFFNET = re.compile(r'^(?P<method>\w+)/(?:[a-z0-9-]+_)?deeplabv3plus_'
                    r'effnetlite0-d16_1xb4-1k_(?:camvid|ccp)-[0-9-]+-'
                    r'\d+x\d+\.py$')
RECIPES = {}
for _path in ALL_CONFIGS:
    _match = EFFNET.match(_path)
    if _match and _match['method'] != 'composition':
        RECIPES.setdefault(_match['method'], []).append(_path)

load = config_loader(CONFIG_DIR)


def config_dict(relpath: str) -> dict:
    """The runner's keys of a config as plain data, paths normalised (the
    same split file is named from configs/supervised/ and from
    configs/mean_teacher/)."""
    cfg = plain(load(relpath))
    return normalise_paths({k: v for k, v in cfg.items() if k in RUNNER_KEYS})


def normalise_paths(node):
    if isinstance(node, dict):
        return {k: normalise_paths(v) for k, v in node.items()}
    if isinstance(node, list):
        return [normalise_paths(v) for v in node]
    if isinstance(node, str) and '/../' in node:
        return osp.normpath(node)
    return node


def outside(paths, allowed) -> list:
    """The paths that none of ``allowed`` covers."""
    return [
        p for p in paths
        if not any(p == a or p.startswith((a + '.', a + '[')) for a in allowed)
    ]


def is_semi(cfg) -> bool:
    return any(k in cfg.model for k in ('segmentor', 'segmentor1'))


# ------------------------------------------- method = supervised + method
@pytest.mark.parametrize('relpath', METHOD_CONFIGS)
def test_method_config_is_its_supervised_config_plus_the_method(relpath):
    method, supervised = config_dict(relpath), config_dict(
        supervised_twin(relpath))
    model, supervised_model = method.pop('model'), supervised.pop('model')
    if 'segmentor' in model:
        assert model['segmentor'] == supervised_model
    else:
        for key in ('segmentor1', 'segmentor2'):
            changed = differences(model[key], supervised_model)
            assert not outside(changed, RML_STUDENT_PATHS), (key, changed)
    allowed = METHOD_PATHS
    if 'r101-d8_8xb2' in relpath:
        allowed += U2PL_SETTING_PATHS
    changed = outside(differences(method, supervised), allowed)
    assert not changed, f'{relpath} differs from its supervised config in ' \
        f'{changed}'


def test_every_supervised_config_has_its_methods():
    """Each supervised config is the baseline of a mean-teacher and a U2PL
    config; the EfficientNet ones also of an RML config."""
    for supervised in [p for p in ALL_CONFIGS if p.startswith('supervised')]:
        twins = {
            p.split(os.sep)[0]
            for p in METHOD_CONFIGS if supervised_twin(p) == supervised
        }
        expected = {'mean_teacher', 'u2pl'}
        if 'effnetlite0' in supervised:
            expected.add('rml')
        assert twins == expected, supervised


@pytest.mark.parametrize('relpath', sorted(COMPOSITIONS))
def test_composition_is_its_base_config_plus_the_composed_part(relpath):
    base, added = COMPOSITIONS[relpath]
    changed = differences(config_dict(relpath), config_dict(base))
    assert changed and not outside(changed, added), changed


@pytest.mark.parametrize('relpath', STAGE2_CONFIGS)
def test_stage2_is_stage1_started_from_its_last_checkpoint(relpath):
    stage1_path = relpath[:-len('_stage2.py')] + '.py'
    stage1, stage2 = config_dict(stage1_path), config_dict(relpath)
    # tools/train.py's default work_dir is work_dirs/<config name>; the
    # last checkpoint of stage 1 is iter_<max_iters>.pth.
    stage1_name = osp.splitext(osp.basename(stage1_path))[0]
    assert stage2['model'].pop('stage2_init') == dict(
        checkpoint=f'work_dirs/{stage1_name}/'
        f'iter_{stage1["train_cfg"]["max_iters"]}.pth',
        load_rectifiers=True)
    # The networks are trained already: no supervised-only warm-up.
    assert stage2['model'].pop('unsup_start_iter') == 0
    stage1['model'].pop('unsup_start_iter')
    assert stage1 == stage2


# ------------------------------------------------ one CamVid / CCP recipe
def without_data(relpath: str) -> dict:
    """A config with its data taken out: the loaders' datasets, and which
    checkpoint is kept (CCP validates on its test split, so its configs
    keep no 'best' checkpoint)."""
    cfg = config_dict(relpath)
    loaders = [cfg[k] for k in ('train_dataloader', 'val_dataloader',
                                'test_dataloader')]
    loaders.append(cfg['train_cfg'].get('unlabeled_dataloader', {}))
    for loader in loaders:
        loader.pop('dataset', None)
    checkpoint = cfg['default_hooks']['checkpoint']
    checkpoint.pop('save_best', None)
    checkpoint.pop('rule', None)
    return cfg


def transform_types(pipeline) -> list:
    """A pipeline's transform types, nested ones (MultiBranch's branches,
    RandomApply's transforms) included."""
    types = []
    for transform in pipeline:
        types.append(transform['type'])
        for name, branch in sorted(transform.get('branches', {}).items()):
            types.append((name, transform_types(branch)))
        if 'transforms' in transform:
            types.append(transform_types(transform['transforms']))
    return types


@pytest.mark.parametrize('method', sorted(RECIPES))
def test_ccp_recipe_is_the_camvid_recipe(method):
    """Every CamVid and CCP config of a method (each split) is one recipe:
    the same keys and values but for the data; the training pipelines have
    the same transforms (their sizes follow the images)."""
    paths = RECIPES[method]
    assert {('ccp' in p) for p in paths} == {True, False}, paths
    reference = paths[0]
    for path in paths[1:]:
        changed = differences(without_data(path), without_data(reference))
        assert not changed, f'{path} vs {reference}: {changed}'
        for key in ('train_dataloader', 'unlabeled_dataloader'):
            loaders = [
                load(p).train_dataloader if key == 'train_dataloader' else
                load(p).train_cfg.get('unlabeled_dataloader')
                for p in (path, reference)
            ]
            if loaders[0] is None:
                continue
            pipelines = [
                [transform_types(d.pipeline) for d in leaf_datasets(
                    loader.dataset)] for loader in loaders
            ]
            assert pipelines[0] == pipelines[1], (path, key)


@pytest.mark.parametrize('relpath', RECIPES['rml'])
def test_rml_keeps_the_mean_teacher_baselines_pseudo_labels(relpath):
    """RML on CamVid and CCP departs from the paper's every-pixel labels
    (the config says why): the baseline's entropy filter and warm-up, its
    unsupervised weight shared by each student's own and peer terms, and
    milder noise than the paper's, different for the two students."""
    model = load(relpath).model
    baseline = load(relpath.replace('rml' + os.sep + 'rml_', 'mean_teacher' +
                                    os.sep + 'mean-teacher_')).model
    for key in ('pseudo_labeler', 'cutmix', 'unsup_start_iter',
                'channels_last'):
        assert plain(model[key]) == plain(baseline[key]), key
    unsup_weight = baseline.get(
        'unsup_weight',
        inspect.signature(MeanTeacherSegmentor).parameters['unsup_weight']
        .default)
    for index in (1, 2):
        assert model[f'unsup{index}_own_weight'] + \
            model[f'unsup{index}_peer_weight'] == unsup_weight
    noise = []
    for index in (1, 2):
        dropout = model[f'student{index}_noise']['dropout']
        drop_path = model[f'segmentor{index}'].backbone.drop_path_rate + \
            model[f'student{index}_noise']['drop_path']
        assert 0 < dropout < RML_PAPER_NOISE['dropout']
        assert 0 < drop_path < RML_PAPER_NOISE['drop_path']
        noise.append((dropout, drop_path))
    assert noise[0] != noise[1]


# -------------------------------------------------------- every semi config
RUN_CONFIGS = [p for p in ALL_CONFIGS if p.split(os.sep)[0] != '_base_']


@pytest.mark.parametrize('relpath', RUN_CONFIGS)
def test_semi_config_runs_the_semi_loops_and_updates_its_teachers(relpath):
    """Every config outside supervised/ is semi-supervised. The plain loops
    would never read its unlabeled loader or validate its teachers; without
    the EMA hook the teachers keep their initial weights; a 'best'
    checkpoint must follow a metric the loop reports."""
    cfg = load(relpath)
    assert is_semi(cfg) == (not relpath.startswith('supervised' + os.sep))
    if not is_semi(cfg):
        return
    assert cfg.train_cfg.type == 'SemiIterBasedTrainLoop'
    assert 'unlabeled_dataloader' in cfg.train_cfg
    assert cfg.val_cfg.type == 'TeacherStudentValLoop'
    assert 'EMATeacherHook' in [h['type'] for h in cfg.custom_hooks]
    save_best = cfg.default_hooks.checkpoint.get('save_best')
    if save_best is not None:
        assert re.fullmatch(r'teacher\d?/mIoU', save_best), save_best


@pytest.mark.parametrize('dataset,root', [('camvid', camvid_root),
                                          ('ccp', ccp_root)])
def test_labeled_and_unlabeled_splits_partition_the_training_set(
        dataset, root):
    """For each split of the dataset's semi configs, the labeled and the
    unlabeled images are disjoint and together the training set (every
    image of the labeled images' folder). The VOC and Cityscapes split
    files are not in the repository: make_semi_splits.py writes them, and
    tests/tools/test_make_semi_splits.py checks their partition."""
    splits = {}
    for path in RUN_CONFIGS:
        cfg = load(path)
        if f'_{dataset}-' not in path or not is_semi(cfg):
            continue
        datasets = leaf_datasets(cfg.train_dataloader.dataset) + \
            leaf_datasets(cfg.train_cfg.unlabeled_dataloader.dataset)
        key = tuple(normalise_paths(d.ann_file) for d in datasets)
        splits.setdefault(key, [
            dict(plain(d), data_root=root(), pipeline=[]) for d in datasets
        ])
    assert splits
    for key, datasets in splits.items():
        images = []
        for dataset_cfg in datasets:
            built = DATASETS.build(dataset_cfg)
            images.append({
                osp.normpath(built.get_data_info(i)['img_path'])
                for i in range(len(built))
            })
        labeled, unlabeled = images[0], set().union(*images[1:])
        assert labeled and unlabeled and not labeled & unlabeled, key
        [folder] = {osp.dirname(p) for p in labeled}
        suffix = osp.splitext(next(iter(labeled)))[1]
        training = set(glob.glob(osp.join(folder, '*' + suffix)))
        assert labeled | unlabeled == training, key
