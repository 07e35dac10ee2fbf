"""The CCP dataset (Clothing Co-Parsing, 11 groups) and its configs, on the
real data in ../shared/data/ccp."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from helpers import CONFIG_DIR, ccp_root, tiny_camvid_run_config
from test_train_resume import scalars, train, train_tool  # noqa: F401

import mmseg_semi  # noqa: F401

CCP_NAME = 'effnetlite0-d16_1xb4-1k_ccp-1-8-320x256.py'
CAMVID_NAME = 'effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py'
CCP_CONFIGS = {
    'sup': f'supervised/deeplabv3plus_{CCP_NAME}',
    'mt': f'mean_teacher/mean-teacher_deeplabv3plus_{CCP_NAME}',
    'u2pl': f'u2pl/u2pl_deeplabv3plus_{CCP_NAME}',
    'rml': f'rml/rml_deeplabv3plus_{CCP_NAME}',
}
CAMVID_TWINS = {
    'mt': f'mean_teacher/mean-teacher_deeplabv3plus_{CAMVID_NAME}',
    'u2pl': f'u2pl/u2pl_deeplabv3plus_{CAMVID_NAME}',
    'rml': f'rml/rml_deeplabv3plus_{CAMVID_NAME}',
}


@pytest.fixture(autouse=True)
def ccp_env(monkeypatch):
    monkeypatch.setenv('MMSEG_SEMI_CCP_ROOT', ccp_root())
    init_default_scope('mmseg')


def build(cfg):
    return DATASETS.build(cfg)


def test_ccp_splits_build_with_labels_in_range():
    cfg = Config.fromfile(osp.join(CONFIG_DIR, CCP_CONFIGS['mt']))
    labeled = build(cfg.train_dataloader.dataset)
    unlabeled = build(cfg.train_cfg.unlabeled_dataloader.dataset)
    test = build(cfg.test_dataloader.dataset)
    assert (len(labeled), len(unlabeled), len(test)) == (88, 616, 300)
    assert labeled.metainfo['classes'][0] == 'background'
    assert len(labeled.metainfo['classes']) == 11
    assert 'seg_map_path' not in unlabeled.get_data_info(0)
    names = {osp.basename(labeled.get_data_info(i)['img_path'])
             for i in range(len(labeled))}
    assert not names & {osp.basename(unlabeled.get_data_info(i)['img_path'])
                        for i in range(len(unlabeled))}
    sample = labeled[0]
    mask = sample['data_samples'].gt_sem_seg.data.numpy()
    assert set(np.unique(mask)) <= set(range(11)) | {255}
    # At most the crop (a photo scaled below it stays smaller; the data
    # preprocessor pads the batch).
    height, width = sample['inputs'].shape[1:]
    assert height <= 320 and width <= 256


def test_ccp_missing_split_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        build(dict(type='CCPDataset', data_root=ccp_root(),
                   ann_file=str(tmp_path / 'nope.txt'),
                   data_prefix=dict(img_path='img_dir/train')))


@pytest.mark.parametrize('method', ['mt', 'u2pl', 'rml'])
def test_ccp_recipe_is_the_camvid_recipe(method):
    """One recipe: a CCP method config differs from its CamVid twin only in
    data (loaders, pipelines, class weights), not in method keys."""
    ccp = Config.fromfile(osp.join(CONFIG_DIR, CCP_CONFIGS[method]))
    camvid = Config.fromfile(osp.join(CONFIG_DIR, CAMVID_TWINS[method]))

    def method_keys(cfg):
        model = cfg.model.to_dict()
        for name in ('segmentor', 'segmentor1', 'segmentor2'):
            model.pop(name, None)
        hooks = [h['type'] for h in cfg.custom_hooks]
        return model, hooks, cfg.train_cfg.type, cfg.optim_wrapper.to_dict()

    assert method_keys(ccp) == method_keys(camvid)
    assert ccp.train_cfg.max_iters == camvid.train_cfg.max_iters == 1000


def test_ccp_mean_teacher_trains_and_the_guard_writes_shares(
        tmp_path, train_tool):  # noqa: F811
    config = tmp_path / 'mt_ccp.py'
    config.write_text(
        tiny_camvid_run_config(
            osp.join(CONFIG_DIR, CCP_CONFIGS['mt']), semi=True, max_iters=4,
            data_root=ccp_root()) +
        "custom_hooks = [dict(type='EMATeacherHook', decay=0.99, "
        "warmup=True), dict(type='ClassCollapseGuardHook', interval=2)]\n")
    work_dir = tmp_path / 'work'
    train(train_tool, config, work_dir, 'mt_ccp')
    losses = [r for r in scalars(work_dir) if 'unsup_loss_ce' in r]
    assert [r['step'] for r in losses] == [2, 3, 4]
    assert all(np.isfinite(r['unsup_loss_ce']) for r in losses)
    shares_files = list(work_dir.glob('*/class_shares.jsonl'))
    assert len(shares_files) == 1
    records = [json.loads(line) for line in open(shares_files[0])]
    assert [r['iter'] for r in records] == [2, 4]
    assert records[0]['classes'][9] == 'bag'
    assert sum(records[-1]['labeled_share']) == pytest.approx(1, abs=1e-4)
    assert sum(records[-1]['predicted_share']) == pytest.approx(1, abs=1e-4)
