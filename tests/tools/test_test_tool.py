"""tools/test.py: --predict-on for every semi-supervised segmentor,
mmseg's --show/--show-dir/--wait-time, and --tta on CamVid and CCP."""
import glob
import os
import os.path as osp

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmseg_semi  # noqa: F401
from helpers import (CONFIG_DIR, MEAN_TEACHER_CONFIG,  # noqa: F401
                     REPO_ROOT, SUPERVISED_CONFIG, camvid_root, load_script,
                     single_thread, tiny_camvid_run_config)
from mmseg.registry import MODELS
from mmseg_semi.utils import adapt_config_to_device

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
    return load_script('tools', 'test.py', name='_mmseg_semi_test_tool')


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


# ------------------------------------------- mmseg's visualisation flags
def test_show_flags_turn_on_the_hook_as_mmseg_does():
    tool = load_test_tool()
    cfg = tool.build_config(tool.parse_args([MEAN_TEACHER, 'ckpt.pth']))
    assert not cfg.default_hooks.visualization.get('draw', False)
    args = tool.parse_args([
        MEAN_TEACHER, 'ckpt.pth', '--show', '--wait-time', '0.5',
        '--show-dir', 'vis'
    ])
    cfg = tool.build_config(args)
    hook = cfg.default_hooks.visualization
    assert (hook.draw, hook.show, hook.wait_time) == (True, True, 0.5)
    # mmseg's interval (the hook's default, every 50th image) is kept.
    assert 'interval' not in hook
    assert cfg.visualizer.save_dir == 'vis'
    # --show alone displays and saves nothing; mmseg's default wait: 2 s.
    cfg = tool.build_config(tool.parse_args([MEAN_TEACHER, 'c', '--show']))
    hook = cfg.default_hooks.visualization
    assert (hook.draw, hook.show, hook.wait_time) == (True, True, 2)
    assert 'save_dir' not in cfg.visualizer


def test_show_needs_a_visualization_hook(tmp_path):
    tool = load_test_tool()
    config = tmp_path / 'no_hook.py'
    config.write_text(f'_base_ = [{SUPERVISED!r}]\n'
                      'default_hooks = dict(visualization=None)\n')
    with pytest.raises(KeyError, match='no default_hooks.visualization'):
        tool.build_config(tool.parse_args([str(config), 'c', '--show']))
    # --out writes masks through the evaluator: no hook needed.
    cfg = tool.build_config(tool.parse_args([str(config), 'c', '--out', 'o']))
    assert cfg.test_evaluator.output_dir == 'o'


def tiny_checkpoint(config: str, path: str) -> str:
    """Random weights of ``config``'s model (plain BN: no GPU here)."""
    cfg = adapt_config_to_device(Config.fromfile(config))
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path


def test_show_dir_draws_every_interval_th_image(tmp_path):
    """mmseg draws every ``interval``-th test image, not every image."""
    tool = load_test_tool()
    config = tmp_path / 'tiny.py'
    config.write_text(
        tiny_camvid_run_config(SUPERVISED_CONFIG, semi=False, val_images=3))
    checkpoint = tiny_checkpoint(str(config), str(tmp_path / 'ckpt.pth'))
    show_dir = tmp_path / 'vis'
    metrics = tool.main([
        str(config), checkpoint, '--work-dir', str(tmp_path / 'work'),
        '--show-dir', str(show_dir), '--cfg-options',
        'default_hooks.visualization.interval=2',
        'test_dataloader.batch_size=1',
        # mmengine keeps one visualizer per name for the process: an
        # earlier test's instance would write into its own save_dir.
        f'visualizer.name=show_dir_interval_{tmp_path.name}'
    ])
    assert 'mIoU' in metrics
    drawn = glob.glob(str(show_dir / '**' / '*.png'), recursive=True)
    # Test images 1..3: only the second is drawn.
    second = sorted(os.listdir(osp.join(camvid_root(), 'test')))[1]
    assert [osp.basename(p) for p in drawn] == [f'test_{second}_0.png']


# -------------------------------------------------------------------- --tta
CAMVID_CCP_CONFIGS = sorted(
    path for pattern in ('*camvid*.py', '*ccp*.py')
    for path in glob.glob(osp.join(CONFIG_DIR, '*', pattern)))


@pytest.mark.parametrize(
    'config', CAMVID_CCP_CONFIGS, ids=lambda path: osp.basename(path)[:48])
def test_tta_wraps_every_camvid_and_ccp_config(config):
    tool = load_test_tool()
    cfg = tool.build_config(tool.parse_args([config, 'ckpt.pth', '--tta']))
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.type in ('EncoderDecoder', 'MeanTeacherSegmentor',
                                     'DualStudentSegmentor')
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline == cfg.tta_pipeline
    [augment] = [t for t in pipeline if t.type == 'TestTimeAug']
    scales, flips, annotations, _ = augment.transforms
    assert len(scales) * len(flips) == 12
    assert annotations[0].type == 'LoadCheckedAnnotations'


def test_tta_without_a_tta_pipeline_fails_clearly(tmp_path):
    tool = load_test_tool()
    config = tmp_path / 'no_tta.py'
    config.write_text(f'_base_ = [{SUPERVISED!r}]\ntta_pipeline = None\n')
    with pytest.raises(KeyError, match='no tta_pipeline'):
        tool.build_config(tool.parse_args([str(config), 'c', '--tta']))


def test_tta_runs_a_semi_segmentor_on_camvid(tmp_path):
    """--tta with CamVid's tta_pipeline (6 scales x 2 flips) around a mean
    teacher predicting with its student: full-size masks, metrics."""
    tool = load_test_tool()
    config = tmp_path / 'tiny.py'
    config.write_text(
        tiny_camvid_run_config(MEAN_TEACHER_CONFIG, semi=True, val_images=1))
    checkpoint = tiny_checkpoint(str(config), str(tmp_path / 'ckpt.pth'))
    out = tmp_path / 'masks'
    metrics = tool.main([
        str(config), checkpoint, '--tta', '--predict-on', 'student',
        '--work-dir', str(tmp_path / 'work'), '--out', str(out)
    ])
    assert 0 <= metrics['mIoU'] <= 100
    [mask] = os.listdir(out)
    first = sorted(os.listdir(osp.join(camvid_root(), 'test')))[0]
    assert mask == first
    # The tiny config's test pipeline resizes to 64x64; the TTA pipeline
    # keeps CamVid's 480x360, which the merged prediction has.
    assert cv2.imread(str(out / mask), cv2.IMREAD_UNCHANGED).shape == \
        (360, 480)
