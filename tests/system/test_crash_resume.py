"""Crash safety of U2PL and RML training (SIGKILL, then ``--resume``).

A tiny CamVid run (6 iterations, a checkpoint every 2) in a subprocess of
tools/train.py is killed with SIGKILL while ``iter_4.pth`` is being
written (after its bytes are out, before the rename) and, once resumed,
again at a random moment of iteration 5 or 6. ``--resume`` continues from
the newest complete checkpoint and the run ends with exactly the state of
an uninterrupted one. A truncated checkpoint given explicitly is refused
with an error naming it.
"""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO_ROOT, camvid_root, single_thread  # noqa: F401
from test_reliability_resume_dist import write_run_config
from test_train_resume import (load_train_tool,  # noqa: F401
                               restore_global_determinism, state_dict)

#: Runs tools/train.py; with CRASH_CHECKPOINT=<name> it announces (by
#: creating <name>.writing) and then stalls the fsync of <name>'s write, so
#: that the test can kill it mid-write.
LAUNCHER = '''
import os, runpy, sys, time
target = os.environ.get('CRASH_CHECKPOINT')
if target:
    real_fsync = os.fsync

    def fsync(fd):
        name = os.readlink(f'/proc/self/fd/{fd}')
        if os.path.basename(name).startswith(os.path.basename(target)):
            open(target + '.writing', 'w').close()
            time.sleep(600)
        real_fsync(fd)

    os.fsync = fsync
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def start(tmp_path, config, work_dir, *args, crash_checkpoint=None):
    launcher = tmp_path / 'launch_train.py'
    launcher.write_text(LAUNCHER)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               MMSEG_SEMI_CAMVID_ROOT=camvid_root())
    env.pop('CRASH_CHECKPOINT', None)
    if crash_checkpoint:
        env['CRASH_CHECKPOINT'] = str(crash_checkpoint)
    log = open(tmp_path / f'{work_dir.name}_{time.monotonic_ns()}.out', 'w')
    process = subprocess.Popen(
        [sys.executable, str(launcher),
         osp.join(REPO_ROOT, 'tools', 'train.py'), config, '--work-dir',
         str(work_dir), *args],
        cwd=str(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log.name
    return process


def output(process) -> str:
    with open(process.log_path) as f:
        return f.read()


def finish(process, timeout=300):
    assert process.wait(timeout) == 0, output(process)[-4000:]


def wait_for(process, condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, output(process)[-4000:]
        assert time.monotonic() < deadline, output(process)[-4000:]
        time.sleep(0.02)


def kill(process):
    process.send_signal(signal.SIGKILL)
    assert process.wait(60) == -signal.SIGKILL


def last_checkpoint(work_dir) -> str:
    with open(work_dir / 'last_checkpoint') as f:
        return f.read().strip()


def assert_same_final_state(straight, resumed, n):
    a, b = (state_dict(work_dir / f'iter_{n}.pth')
            for work_dir in (straight, resumed))
    assert a['meta']['iter'] == b['meta']['iter'] == n
    assert a['message_hub']['runtime_info']['iter'] == \
        b['message_hub']['runtime_info']['iter']
    assert set(a['state_dict']) == set(b['state_dict'])
    different = [k for k, v in a['state_dict'].items()
                 if not torch.equal(v, b['state_dict'][k])]
    assert not different, f'{len(different)} tensors differ: {different[:5]}'
    moments = [(index, key) for index, s in a['optimizer']['state'].items()
               for key, v in s.items() if torch.is_tensor(v)]
    assert moments  # SGD momentum buffers
    for index, key in moments:
        assert torch.equal(a['optimizer']['state'][index][key],
                           b['optimizer']['state'][index][key]), (index, key)
    assert a['param_schedulers'] == b['param_schedulers']


@pytest.mark.parametrize('method', ['u2pl', 'rml'])
def test_sigkill_during_write_and_at_random_resumes_exactly(tmp_path, method):
    n = 6
    config = write_run_config(tmp_path, method, max_iters=n,
                              checkpoint_interval=2)
    straight, crashed = tmp_path / 'straight', tmp_path / 'crashed'
    reference = start(tmp_path, config, straight)

    # 1. Killed while iter_4.pth is written: iter_2.pth stays the newest.
    target = crashed / 'iter_4.pth'
    run = start(tmp_path, config, crashed, crash_checkpoint=target)
    wait_for(run, lambda: osp.exists(f'{target}.writing'))
    kill(run)
    assert osp.isfile(f'{target}.part') and not osp.exists(target)
    assert last_checkpoint(crashed) == str(crashed / 'iter_2.pth')
    assert state_dict(crashed / 'iter_2.pth')['meta']['iter'] == 2

    # 2. Resumed, and killed at a random moment after iteration 5 starts.
    run = start(tmp_path, config, crashed, '--resume')
    wait_for(run, lambda: f'Iter(train) [5/{n}]' in output(run))
    assert 'Auto resumed from the latest checkpoint' in output(run)
    assert 'resumed epoch: 0, iter: 2' in output(run)
    delay = random.uniform(0, 1.0)
    time.sleep(delay)
    if run.poll() is None:
        kill(run)
    # 3. Resumed to the end.
    finish(start(tmp_path, config, crashed, '--resume'))
    finish(reference)
    assert last_checkpoint(crashed) == str(crashed / f'iter_{n}.pth')
    assert not list(crashed.glob('*.part')), 'a retried write left its part'
    assert_same_final_state(straight, crashed, n)


def test_truncated_checkpoint_given_explicitly_is_refused(tmp_path):
    config = write_run_config(tmp_path, 'u2pl', max_iters=2,
                              checkpoint_interval=2)
    work_dir = tmp_path / 'work'
    finish(start(tmp_path, config, work_dir))
    data = (work_dir / 'iter_2.pth').read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError,
                       match=f'checkpoint {truncated} is truncated'):
        load_train_tool().main([
            config, '--work-dir', str(tmp_path / 'resumed'), '--resume',
            '--cfg-options', f'load_from={truncated}',
            'experiment_name=truncated', 'visualizer.name=truncated'
        ])
