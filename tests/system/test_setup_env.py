"""The environment of tools/setup_env.sh, used the ways a user would use it.

The set-up must not depend on the host: requirements/constraints.txt holds
setuptools where torch and the users of ``pkg_resources`` need it (mmcv's
build, mim, mmengine 0.10.7's lookup of ``mmseg::`` bases) and keeps the
OpenMMLab pins, and the environment tests run in must honour it. mmseg's
own packaged tools/train.py and ``mim train mmsegmentation`` (openmim comes
with the set-up) train a CamVid semi config. Without ``pkg_resources`` (as
with setuptools>=82) every config still parses through this repository's
tools/train.py and tools/test.py, which import mmseg_semi (and so its
package-lookup patch) first; mmseg's tools resolve ``mmseg::`` bases before
``custom_imports`` runs and fail, with the error docs/get_started.md explains.
"""
import importlib.metadata
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import mmseg
import pytest
import torch
from helpers import (CONFIG_DIR, MEAN_TEACHER_CONFIG, REPO_ROOT,
                     tiny_camvid_run_config)
from packaging.requirements import Requirement

CONSTRAINTS = osp.join(REPO_ROOT, 'requirements', 'constraints.txt')
GET_STARTED = osp.join(REPO_ROOT, 'docs', 'get_started.md')
MMSEG_TRAIN = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                       'train.py')
#: What a user of setuptools>=82 sees when mmengine looks for pkg_resources.
MISSING_PKG_RESOURCES = "No module named 'pkg_resources'"
#: Python source that makes ``pkg_resources`` unimportable from then on.
BLOCK_PKG_RESOURCES = f'''
import sys


class NoPkgResources:
    """A meta path finder that answers as if setuptools>=82 were installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'pkg_resources':
            raise ModuleNotFoundError({MISSING_PKG_RESOURCES!r}, name=name)


sys.meta_path.insert(0, NoPkgResources())
sys.modules.pop('pkg_resources', None)
try:
    import pkg_resources  # noqa: F401
    raise SystemExit('pkg_resources is still importable')
except ModuleNotFoundError:
    pass
'''
#: Training without validation: the run ends at the iteration-2 checkpoint.
NO_VALIDATION = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']


def run(cmd, cwd):
    """Run ``cmd`` as a user would, with one intra-op thread."""
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=800)


def output(result) -> str:
    return (f'stdout:\n{result.stdout[-4000:]}\n'
            f'stderr:\n{result.stderr[-4000:]}')


def assert_trained_two_iterations(result, work_dir):
    assert result.returncode == 0, output(result)
    checkpoint = torch.load(
        osp.join(work_dir, 'iter_2.pth'), map_location='cpu',
        weights_only=False)
    assert checkpoint['meta']['iter'] == 2
    # MeanTeacherSegmentor, found through the config's custom_imports.
    teacher = [k for k in checkpoint['state_dict'] if k.startswith('teacher.')]
    assert len(teacher) > 100


@pytest.fixture(scope='module')
def two_iteration_config(tmp_path_factory):
    """The CamVid 1/8 mean-teacher config, small, for 2 iterations."""
    path = tmp_path_factory.mktemp('configs') / 'mean_teacher_2_iters.py'
    path.write_text(
        tiny_camvid_run_config(
            MEAN_TEACHER_CONFIG,
            semi=True,
            max_iters=2,
            checkpoint_interval=2,
            unsup_start_iter=1))
    return str(path)


# ----------------------------------------------------------- constraints
def test_environment_holds_the_constraints():
    with open(CONSTRAINTS) as f:
        lines = [line.split('#')[0].strip() for line in f]
    constraints = [Requirement(line) for line in lines if line]
    assert 'setuptools' in [c.name for c in constraints]
    # torch's own requirement on setuptools (torch 2.13: >=77.0.3) too.
    torch_needs = [
        r for r in map(Requirement,
                       importlib.metadata.requires('torch') or [])
        if r.name == 'setuptools' and (r.marker is None or r.marker.evaluate())
    ]
    broken = []
    for requirement in constraints + torch_needs:
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            broken.append(f'{requirement.name} is not installed')
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            broken.append(f'{requirement.name} {version} is not {requirement}')
    assert not broken, (f'{sys.prefix} does not hold {CONSTRAINTS}: '
                        f'{broken}; run tools/setup_env.sh')
    # mim and mmseg's tools/train.py (`mmseg::` bases) import it.
    assert importlib.util.find_spec('pkg_resources') is not None


# -------------------------------------------- mmseg's own training tools
def test_mmseg_packaged_train_script_trains_semi_config(
        two_iteration_config, tmp_path):
    assert osp.isfile(MMSEG_TRAIN), f'mmsegmentation ships no {MMSEG_TRAIN}'
    work_dir = tmp_path / 'work_dir'
    result = run([
        sys.executable, MMSEG_TRAIN, two_iteration_config, '--work-dir',
        str(work_dir), '--cfg-options', *NO_VALIDATION
    ], cwd=tmp_path)
    assert_trained_two_iterations(result, work_dir)


def test_mim_train_mmsegmentation_trains_semi_config(two_iteration_config,
                                                     tmp_path):
    if importlib.util.find_spec('mim') is None:
        pytest.skip(f'openmim is not installed in {sys.prefix} '
                    '(tools/setup_env.sh installs it): mim train not tested')
    work_dir = tmp_path / 'work_dir'
    result = run([
        sys.executable, '-m', 'mim', 'train', 'mmsegmentation',
        two_iteration_config, '--gpus', '0', '--work-dir',
        str(work_dir), '--cfg-options', *NO_VALIDATION
    ], cwd=tmp_path)
    assert MMSEG_TRAIN in result.stdout, output(result)  # mmseg's script ran
    assert_trained_two_iterations(result, work_dir)


# ------------------------------------------------ without pkg_resources
PARSE_EVERY_CONFIG = BLOCK_PKG_RESOURCES + '''
import glob
import json
import os.path as osp

repo, config_dir = sys.argv[1:3]
sys.path.insert(0, osp.join(repo, 'tests'))
from helpers import load_script, memoised_mmseg_base_lookup  # noqa: E402


def load_tool(name):
    # imports mmseg_semi, as it does
    return load_script(repo, 'tools', name + '.py', name='_tool_' + name)


train, test = load_tool('train'), load_tool('test')
configs = sorted(
    path for path in glob.glob(osp.join(config_dir, '**', '*.py'),
                               recursive=True)
    if '_base_' not in osp.relpath(path, config_dir).split(osp.sep))
failures = {}
with memoised_mmseg_base_lookup():
    for path in configs:
        for tool, argv in ((train, [path]), (test, [path, 'latest.pth'])):
            try:
                tool.build_config(tool.parse_args(argv))
            except Exception as error:
                failures[f'{tool.__name__} {path}'] = repr(error)
print(json.dumps(dict(configs=configs, failures=failures)))
'''


def test_every_config_parses_through_our_tools_without_pkg_resources(
        tmp_path):
    result = run([
        sys.executable, '-c', PARSE_EVERY_CONFIG, REPO_ROOT, CONFIG_DIR
    ], cwd=tmp_path)
    assert result.returncode == 0, output(result)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report['configs']) > 50
    assert MEAN_TEACHER_CONFIG in report['configs']  # has `mmseg::` bases
    assert not report['failures'], json.dumps(report['failures'], indent=1)


def test_mmseg_train_script_without_pkg_resources_fails_as_documented(
        two_iteration_config, tmp_path):
    """mmengine resolves ``mmseg::`` bases before ``custom_imports`` can
    import mmseg_semi and its patch, so mmseg's script needs
    pkg_resources; the error a user then sees is in docs/get_started.md,
    with what to do."""
    run_mmseg_train = BLOCK_PKG_RESOURCES + (
        'import runpy\n'
        'sys.argv = sys.argv[1:]\n'
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    result = run([
        sys.executable, '-c', run_mmseg_train, MMSEG_TRAIN,
        two_iteration_config, '--work-dir',
        str(tmp_path / 'work_dir')
    ], cwd=tmp_path)
    assert result.returncode != 0, output(result)
    assert MISSING_PKG_RESOURCES in result.stderr, output(result)
    assert 'is_installed' in result.stderr  # mmengine's `mmseg::` lookup
    with open(GET_STARTED) as f:
        assert MISSING_PKG_RESOURCES in f.read(), (
            f'{GET_STARTED} does not say what to do about '
            f'"{MISSING_PKG_RESOURCES}"')
