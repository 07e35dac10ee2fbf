"""tools/benchmark/gpu_check.sh in its tiny CPU mode, so that the GPU
readiness check keeps working while no GPU is at hand."""
import math
import os
import os.path as osp
import re
import subprocess
import sys

from helpers import REPO_ROOT, load_script

SCRIPT = osp.join(REPO_ROOT, 'tools', 'benchmark', 'gpu_check.sh')
gpu_check = load_script('tools', 'benchmark', 'gpu_check.py')


def test_config_edits_for_random_weights_and_tiny_crops():
    model = dict(
        data_preprocessor=dict(type='A', size=(256, 512)),
        segmentor=dict(
            data_preprocessor=dict(type='B', size=(513, 513)),
            pretrained='open-mmlab://resnet101_v1c',
            backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='x')),
            decode_head=dict(num_classes=11, loss_decode=dict(
                class_weight='median_frequency')),
            auxiliary_head=[dict(init_cfg=dict(type='Normal'))]))
    gpu_check.strip_pretrained(model)
    gpu_check.shrink_preprocessors(model, (64, 64))
    gpu_check.uniform_class_weights(model, 11)
    segmentor = model['segmentor']
    assert segmentor['pretrained'] is None
    assert segmentor['backbone']['init_cfg'] is None
    assert segmentor['auxiliary_head'][0]['init_cfg'] == dict(type='Normal')
    assert model['data_preprocessor']['size'] == (64, 64)
    assert segmentor['data_preprocessor']['size'] == (64, 64)
    assert segmentor['decode_head']['loss_decode']['class_weight'] == \
        [1.0] * 11
    assert gpu_check.find_value(model, 'num_classes') == 11


def test_tiny_cpu_run_prints_one_table_of_finite_losses():
    env = dict(os.environ, OMP_NUM_THREADS='1')
    # The test's interpreter first on PATH: its environment is ready, so
    # the script must skip the set-up (no wheelhouse here).
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env['PATH']
    result = subprocess.run(
        [SCRIPT, '--wheelhouse', REPO_ROOT, '--device', 'cpu', '--tiny'],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'set-up skipped' in result.stderr
    out = result.stdout
    assert 'mmcv ops: CPU kernels only' in out
    rows = [line for line in out.splitlines()
            if re.match(r'\| \([a-d]\) ', line)]
    checks = [row.split(' | ')[0][2:] for row in rows]
    expected = ['(a) contrastive loss fp32']
    for section, label, _ in gpu_check.TRAIN_ROWS:
        expected += [f'({section}) {label} fp32', f'({section}) {label} bf16']
    assert checks == expected
    for row in rows:
        cells = [cell.strip() for cell in row.strip('|').split('|')]
        check, _, seconds, _, finite, losses, note = cells
        assert float(seconds) > 0, check
        assert finite == 'yes', check
        values = dict(item.split('=') for item in losses.split(', '))
        assert 'loss' in values or check.startswith('(a)'), check
        assert all(math.isfinite(float(v)) for v in values.values()), check
    # On the CPU the reference is the same computation: identical loss.
    assert 'rel. diff 0.0e+00' in rows[0]
    # Every training row reports supervised and unsupervised terms.
    for row in rows[1:]:
        assert 'sup' in row and 'unsup' in row
    assert '(d) CARAFE under the mean teacher: skipped' in out
