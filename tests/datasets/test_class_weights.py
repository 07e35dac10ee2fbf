"""Median-frequency class weights: the functions, the hook that fills
``class_weight='median_frequency'`` before training, and the tool."""
import os.path as osp
import sys

import numpy as np

import pytest
import torch
from mmengine.config import Config

from helpers import (CONFIG_DIR, REPO_ROOT, camvid_root, load_script,
                     tiny_camvid_run_config, tiny_mean_teacher_cfg)
import mmseg_semi  # noqa: F401
from mmengine.runner import Runner
from mmseg_semi.datasets.class_frequency import (label_pixel_counts,
                                                 median_frequency_weights)
from mmseg_semi.engine.hooks import LabeledClassWeightHook
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules


#: Median-frequency weights of CamVid's 1/8 labeled split, as the tool
#: printed them (4 decimals) when the configs still listed them.
CAMVID_1_8_WEIGHTS = [
    0.2718, 0.2140, 4.1958, 0.1447, 1.0000, 0.4341, 3.9586, 3.5551, 0.7394,
    8.1564, 9.8327
]


def load_tool():
    return load_script('tools', 'dataset_converters',
                       'compute_class_weights.py')


def test_median_frequency_weights_by_hand():
    # Class 0: 30 px in images of 100 px -> f = 0.3; class 1: 10 / 50 =
    # 0.2; class 2: 4 / 10 = 0.4; class 3 never seen. median(f) = 0.3.
    weights = median_frequency_weights(
        torch.tensor([30, 10, 4, 0]), torch.tensor([100, 50, 10, 0]))
    assert weights.tolist() == pytest.approx([1.0, 1.5, 0.75, 0.0])


def test_label_pixel_counts_by_hand():
    maps = [np.array([[0, 0], [1, 255]]), np.array([[2, 2], [2, 7]])]
    class_pixels, present = label_pixel_counts(maps, num_classes=3)
    # Map 1 has 3 counted pixels (255 is not a class), map 2 has 3 (7 is
    # outside [0, 3)); class 2 appears only in map 2.
    assert class_pixels.tolist() == [2, 1, 3]
    assert present.tolist() == [3, 3, 3]


def test_hook_fills_median_frequency_weights_from_the_labeled_masks(
        tmp_path):
    """The supervised CamVid 1/8 config names
    ``class_weight='median_frequency'``; before training the hook gives the
    loss the weights of the split's 46 labeled masks (the values the
    configs used to list)."""
    config = tiny_camvid_run_config(osp.join(
        CONFIG_DIR, 'supervised',
        'deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py'),
                                    semi=False)
    path = tmp_path / 'config.py'
    path.write_text(config)
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    loss = runner.model.decode_head.loss_decode
    assert loss.weights_pending and loss.class_weight is None
    with pytest.raises(RuntimeError, match='LabeledClassWeightHook'):
        loss(torch.zeros(1, 11, 2, 2), torch.zeros(1, 2, 2).long())
    hook = next(h for h in runner.hooks
                if isinstance(h, LabeledClassWeightHook))
    hook.before_train(runner)
    assert not loss.weights_pending
    assert loss.class_weight == pytest.approx(CAMVID_1_8_WEIGHTS, abs=1e-4)


def test_tool_prints_the_packages_weights(capsys, monkeypatch):
    tool = load_tool()
    split = osp.join(REPO_ROOT, 'splits', 'camvid', '1-8_seed0',
                     'labeled.txt')
    monkeypatch.setattr(sys, 'argv', [
        'compute_class_weights.py',
        osp.join(camvid_root(), 'trainannot'), split, '--num-classes', '11'
    ])
    tool.main()
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed == 'class_weight=[' + ', '.join(
        f'{w:.4f}' for w in CAMVID_1_8_WEIGHTS) + ']'


def test_tool_names_a_missing_mask(tmp_path):
    tool = load_tool()
    with pytest.raises(FileNotFoundError, match='nope.png'):
        list(tool.read_label_maps(str(tmp_path), ['nope'], '.png'))


def test_unsup_class_weight_needs_one_entry_per_class():
    register_all_modules()
    with pytest.raises(ValueError, match='unsup_class_weight has 2 entries'):
        MODELS.build(tiny_mean_teacher_cfg(unsup_class_weight=[1.0, 2.0]))
    with pytest.raises(ValueError, match='non-negative'):
        MODELS.build(tiny_mean_teacher_cfg(unsup_class_weight=[1, -1, 1]))
    model = MODELS.build(tiny_mean_teacher_cfg(unsup_class_weight=[1, 2, 3]))
    assert model.unsup_class_weight.tolist() == [1.0, 2.0, 3.0]
    # Not a checkpoint entry: configs, not checkpoints, define it.
    assert 'unsup_class_weight' not in model.state_dict()
