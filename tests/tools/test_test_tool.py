"""tools/test.py: --predict-on for every semi-supervised segmentor."""
import importlib.util
import os.path as osp

import pytest

from helpers import CONFIG_DIR, REPO_ROOT

RML = osp.join(CONFIG_DIR, 'rml',
               'rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-'
               '256x320.py')
MEAN_TEACHER = osp.join(
    CONFIG_DIR, 'mean_teacher',
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-'
    '256x320.py')
SUPERVISED = osp.join(
    CONFIG_DIR, 'supervised',
    'deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')


def load_test_tool():
    spec = importlib.util.spec_from_file_location(
        '_mmseg_semi_test_tool', osp.join(REPO_ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('config,network', [(RML, 'ensemble'),
                                            (RML, 'teacher2'),
                                            (MEAN_TEACHER, 'student')])
def test_predict_on_reaches_the_model(config, network):
    tool = load_test_tool()
    args = tool.parse_args([config, 'ckpt.pth', '--predict-on', network])
    cfg = tool.build_config(args)
    assert cfg.model.predict_on == network
    assert cfg.load_from == 'ckpt.pth'


def test_predict_on_refuses_a_supervised_config():
    tool = load_test_tool()
    args = tool.parse_args([SUPERVISED, 'ckpt.pth', '--predict-on', 'x'])
    with pytest.raises(ValueError, match='not a semi-supervised config'):
        tool.build_config(args)
