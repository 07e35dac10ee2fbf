"""Bad input fails (or warns) clearly, naming the file, key or value.

Checks that already have tests elsewhere are not repeated here: a missing
split file or a split listing missing images (test_camvid_dataset.py),
students with different ``num_classes`` (test_dual_student.py), a
contrastive loss on a head without decoder features
(test_u2pl_segmentor.py).
"""
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from torch.utils.data import DataLoader

import mmseg_semi  # noqa: F401
from helpers import CONFIG_DIR, SPLIT_DIR, camvid_root
from mmseg.registry import DATASETS, TRANSFORMS
from mmseg_semi.datasets import CamVidDataset
from mmseg_semi.datasets.transforms import LoadCheckedAnnotations
from mmseg_semi.engine.runner import SemiIterBasedTrainLoop
from mmseg_semi.engine.runner import semi_iter_based_train_loop as loop_module
from mmseg_semi.utils import adapt_config_to_device

init_default_scope('mmseg')
LABELED_SPLIT = osp.join(SPLIT_DIR, '1-8_seed0', 'labeled.txt')
UNLABELED_SPLIT = osp.join(SPLIT_DIR, '1-8_seed0', 'unlabeled.txt')


def read_names(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def write_pair(root, name, image_hw, label):
    """``root/train/<name>.png`` (random BGR) and ``root/trainannot/...``."""
    for folder in ('train', 'trainannot'):
        (root / folder).mkdir(exist_ok=True)
    image = np.random.default_rng(0).integers(
        0, 256, (*image_hw, 3), dtype=np.uint8)
    img_path = str(root / 'train' / f'{name}.png')
    seg_path = str(root / 'trainannot' / f'{name}.png')
    cv2.imwrite(img_path, image)
    cv2.imwrite(seg_path, np.asarray(label, dtype=np.uint8))
    return img_path, seg_path


def load(img_path, seg_path, *steps, **kwargs):
    """LoadImageFromFile, ``steps`` and LoadCheckedAnnotations."""
    results = dict(img_path=img_path, seg_map_path=seg_path, seg_fields=[],
                   reduce_zero_label=False, label_map=None)
    results = TRANSFORMS.build(dict(type='LoadImageFromFile'))(results)
    for step in steps:
        results = TRANSFORMS.build(step)(results)
    return LoadCheckedAnnotations(**kwargs)(results)


# ------------------------------------------------------------- splits
def test_overlapping_splits_warn_with_the_count(tmp_path, monkeypatch):
    labeled_names = read_names(LABELED_SPLIT)
    split = tmp_path / 'unlabeled_overlap.txt'
    split.write_text('\n'.join(labeled_names[:3] +
                               read_names(UNLABELED_SPLIT)[:2]) + '\n')
    common = dict(data_root=camvid_root(), pipeline=[])
    labeled = CamVidDataset(
        ann_file=LABELED_SPLIT,
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        **common)
    unlabeled = CamVidDataset(
        ann_file=str(split), data_prefix=dict(img_path='train'), **common)
    messages = []
    monkeypatch.setattr(loop_module, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    loop_module.warn_if_splits_overlap(labeled, unlabeled)
    assert len(messages) == 1
    assert messages[0].startswith('3 image(s) are in both')
    assert min(labeled_names[:3]) in messages[0]  # an example is named
    messages.clear()
    loop_module.warn_if_splits_overlap(
        labeled,
        CamVidDataset(ann_file=UNLABELED_SPLIT,
                      data_prefix=dict(img_path='train'), **common))
    assert messages == []  # the shipped splits are disjoint


def test_empty_split_is_refused_naming_it(tmp_path):
    split = tmp_path / 'empty_unlabeled.txt'
    split.write_text('')
    with pytest.raises(ValueError, match='empty_unlabeled.txt.* no images'):
        CamVidDataset(data_root=camvid_root(), ann_file=str(split),
                      data_prefix=dict(img_path='train'), pipeline=[])


def test_empty_unlabeled_dataset_is_refused_by_the_loop():
    """Datasets that do not check themselves are caught by the loop."""
    labeled = DataLoader(
        [dict(inputs=torch.zeros(1))], collate_fn=pseudo_collate)
    runner = SimpleNamespace(visualizer=SimpleNamespace())
    with pytest.raises(ValueError, match='unlabeled dataset is empty'):
        SemiIterBasedTrainLoop(
            runner, labeled, DataLoader([], collate_fn=pseudo_collate),
            max_iters=2)


# ----------------------------------------------------- images and labels
def test_label_values_beyond_num_classes_name_values_and_file(tmp_path):
    label = np.zeros((4, 5), np.uint8)
    label[0, :3] = [3, 13, 200]
    label[1, 0] = 255  # the ignore index is allowed
    img_path, seg_path = write_pair(tmp_path, 'a', (4, 5), label)
    with pytest.raises(ValueError) as error:
        load(img_path, seg_path, num_classes=11)
    message = str(error.value)
    assert '[13, 200]' in message and seg_path in message
    assert '0..10' in message and '2 pixels' in message
    # In range (3, 0) and ignore (255): accepted and unchanged.
    results = load(img_path, seg_path, num_classes=201)
    np.testing.assert_array_equal(results['gt_seg_map'], label)
    # Another ignore index makes 255 an error too.
    with pytest.raises(ValueError, match=r'\[255\]'):
        load(img_path, seg_path, num_classes=201, ignore_index=0)


def test_label_map_is_applied_before_the_value_check(tmp_path):
    """CamVid's "Unlabelled" 11 is mapped to 255 by label_map first."""
    label = np.full((3, 3), 11, np.uint8)
    img_path, seg_path = write_pair(tmp_path, 'b', (3, 3), label)
    results = dict(img_path=img_path, seg_map_path=seg_path, seg_fields=[],
                   reduce_zero_label=False, label_map={11: 255})
    results = TRANSFORMS.build(dict(type='LoadImageFromFile'))(results)
    out = LoadCheckedAnnotations(num_classes=11)(results)
    assert (out['gt_seg_map'] == 255).all()


def test_image_and_label_of_different_sizes_name_both(tmp_path):
    img_path, seg_path = write_pair(tmp_path, 'c', (6, 8),
                                    np.zeros((6, 9)))
    with pytest.raises(ValueError) as error:
        load(img_path, seg_path)
    message = str(error.value)
    assert img_path in message and '(6, 8)' in message
    assert seg_path in message and '(6, 9)' in message
    # CamVid's test pipeline resizes the image before loading the label:
    # the check compares with the size the image had on disk.
    with pytest.raises(ValueError, match=r'\(6, 8\).*\(6, 9\)'):
        load(img_path, seg_path,
             dict(type='Resize', scale=(9, 6), keep_ratio=False))
    write_pair(tmp_path, 'c', (6, 8), np.zeros((6, 8)))
    results = load(img_path, seg_path,
                   dict(type='Resize', scale=(16, 12), keep_ratio=False))
    assert results['gt_seg_map'].shape == (6, 8)


def test_undecodable_label_names_the_file(tmp_path):
    img_path, seg_path = write_pair(tmp_path, 'd', (2, 2), np.zeros((2, 2)))
    with open(seg_path, 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(ValueError, match='cannot decode the label map') as e:
        load(img_path, seg_path)
    assert seg_path in str(e.value)


def test_unreadable_image_names_the_file(tmp_path):
    img_path, seg_path = write_pair(tmp_path, 'e', (2, 2), np.zeros((2, 2)))
    with open(img_path, 'wb') as f:
        f.write(b'not a png')
    # mmcv's LoadImageFromFile names an undecodable file itself ...
    with pytest.raises(AssertionError, match=f'failed to load.*{img_path}'):
        load(img_path, seg_path)
    # ... but an empty one fails inside OpenCV with no name: CamVidDataset
    # refuses it when built.
    open(img_path, 'wb').close()
    split = tmp_path / 'split.txt'
    split.write_text('e\n')
    with pytest.raises(ValueError, match='empty') as error:
        CamVidDataset(data_root=str(tmp_path), ann_file=str(split),
                      data_prefix=dict(img_path='train',
                                       seg_map_path='trainannot'))
    assert img_path in str(error.value) and 'split.txt' in str(error.value)


def test_image_without_a_dataset_has_no_label_to_load(tmp_path):
    """mmseg's inference APIs strip only ``LoadAnnotations`` from a test
    pipeline: a bare image passes LoadCheckedAnnotations unchanged, while a
    dataset sample (``sample_idx``) without ``seg_map_path`` is an error."""
    img_path, _ = write_pair(tmp_path, 'f', (2, 2), np.zeros((2, 2)))
    results = TRANSFORMS.build(dict(type='LoadImageFromFile'))(
        dict(img_path=img_path))
    out = LoadCheckedAnnotations(num_classes=11)(dict(results))
    assert out.keys() == results.keys() and 'gt_seg_map' not in out
    with pytest.raises(KeyError, match=f'{img_path}.*no seg_map_path'):
        LoadCheckedAnnotations(num_classes=11)(dict(results, sample_idx=0))


def test_bad_num_classes_is_refused():
    with pytest.raises(ValueError, match="num_classes.*'11'"):
        LoadCheckedAnnotations(num_classes='11')


def test_camvid_config_checks_real_samples():
    cfg = Config.fromfile(osp.join(CONFIG_DIR, '_base_', 'datasets',
                                   'camvid.py'))
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):
        [check] = [t for t in pipeline if t.type == 'LoadCheckedAnnotations']
        assert check.num_classes == 11
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.data_root = camvid_root()
    dataset = DATASETS.build(dataset_cfg)
    sample = dataset[0]  # real CamVid masks (with 11 -> 255) pass
    labels = sample['data_samples'].gt_sem_seg.data
    assert set(labels.unique().tolist()) <= set(range(11)) | {255}


# ------------------------------------------------------- device
def test_gpu_only_op_on_cpu_names_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(model=dict(
        type='MeanTeacherSegmentor',
        segmentor=dict(neck=[dict(type='FPN'), dict(
            type='FPN', upsample_cfg=dict(type='carafe', up_kernel=5))]))))
    with pytest.raises(ValueError) as error:
        adapt_config_to_device(cfg)
    message = str(error.value)
    assert "model.segmentor.neck[1].upsample_cfg.type='carafe'" in message
    assert 'GPU-only' in message and 'CARAFE' in message


def test_the_gpu_only_table_is_true_for_this_mmcv():
    """If mmcv gains a CPU kernel for CARAFE this fails, and the entry in
    GPU_ONLY_OPS should go."""
    from mmcv.ops import CARAFEPack
    with pytest.raises(RuntimeError, match='cpu'):
        CARAFEPack(channels=4, scale_factor=2)(torch.randn(1, 4, 3, 3))
