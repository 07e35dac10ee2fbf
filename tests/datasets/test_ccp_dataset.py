"""The CCP dataset (Clothing Co-Parsing, 11 groups), on the real data in
../shared/data/ccp (tests/configs/ checks its configs' recipe,
tests/system/test_train_resume.py trains one)."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from helpers import CONFIG_DIR, ccp_root

import mmseg_semi  # noqa: F401

MEAN_TEACHER_CONFIG = osp.join(
    'mean_teacher',
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_ccp-1-8-320x256.py')


@pytest.fixture(autouse=True)
def ccp_env(monkeypatch):
    monkeypatch.setenv('MMSEG_SEMI_CCP_ROOT', ccp_root())
    init_default_scope('mmseg')


def build(cfg):
    return DATASETS.build(cfg)


def test_ccp_splits_build_with_labels_in_range():
    cfg = Config.fromfile(osp.join(CONFIG_DIR, MEAN_TEACHER_CONFIG))
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
