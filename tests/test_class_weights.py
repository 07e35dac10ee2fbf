"""Median-frequency class weights: the tool, and the CamVid configs' lists."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from helpers import REPO_ROOT, camvid_root, tiny_mean_teacher_cfg
import mmseg_semi  # noqa: F401
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules


def load_tool():
    path = osp.join(REPO_ROOT, 'tools', 'dataset_converters',
                    'compute_class_weights.py')
    spec = importlib.util.spec_from_file_location('compute_class_weights',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_median_frequency_weights_by_hand():
    tool = load_tool()
    # Class 0: 30 px in images of 100 px -> f = 0.3; class 1: 10 / 50 =
    # 0.2; class 2: 4 / 10 = 0.4; class 3 never seen. median(f) = 0.3.
    weights = tool.median_frequency_weights(
        torch.tensor([30, 10, 4, 0]), torch.tensor([100, 50, 10, 0]))
    assert weights.tolist() == pytest.approx([1.0, 1.5, 0.75, 0.0])


@pytest.mark.parametrize('split', ['1-8', '1-4'])
def test_camvid_config_weights_come_from_the_tool(split):
    """The lists in configs/_base_/datasets/camvid.py are what the tool
    computes from the split's labeled masks (and only those)."""
    tool = load_tool()
    split_file = osp.join(REPO_ROOT, 'splits', 'camvid', f'{split}_seed0',
                          'labeled.txt')
    with open(split_file) as f:
        names = [line.strip() for line in f if line.strip()]
    class_pixels, present = tool.count_pixels(
        osp.join(camvid_root(), 'trainannot'), names, 11, '.png')
    weights = tool.median_frequency_weights(class_pixels, present)
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'datasets', 'camvid.py'))
    expected = cfg[f'class_weight_{split.replace("-", "_")}']
    assert weights.tolist() == pytest.approx(expected, abs=1e-4)


def test_count_pixels_names_a_missing_mask(tmp_path):
    tool = load_tool()
    with pytest.raises(FileNotFoundError, match='nope.png'):
        tool.count_pixels(str(tmp_path), ['nope'], 11, '.png')


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
