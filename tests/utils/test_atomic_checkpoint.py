"""Atomic checkpoint writes and the ``last_checkpoint`` fallback."""
import os

import pytest
import torch
from mmengine.runner import checkpoint as ckpt_module
from mmengine.runner import runner as runner_module

import mmseg_semi  # noqa: F401  (applies the patches)
from mmseg_semi.utils import atomic_checkpoint


def test_runner_uses_the_atomic_writer_and_lookup():
    assert ckpt_module.save_checkpoint.__module__ == atomic_checkpoint.__name__
    assert runner_module.save_checkpoint is ckpt_module.save_checkpoint
    assert runner_module.find_latest_checkpoint is \
        ckpt_module.find_latest_checkpoint
    assert ckpt_module.find_latest_checkpoint.__module__ == \
        atomic_checkpoint.__name__


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_2.pth')
    ckpt_module.save_checkpoint({'w': torch.ones(3)}, path)
    assert not os.path.exists(path + '.part')

    def dies(fd):
        raise KeyboardInterrupt  # as if the process ended mid-write

    monkeypatch.setattr(os, 'fsync', dies)
    with pytest.raises(KeyboardInterrupt):
        ckpt_module.save_checkpoint({'w': torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert os.path.getsize(path + '.part') > 0
    assert torch.equal(torch.load(path)['w'], torch.ones(3))
    ckpt_module.save_checkpoint({'w': torch.zeros(2)}, path)
    assert torch.equal(torch.load(path)['w'], torch.zeros(2))
    assert not os.path.exists(path + '.part')


@pytest.mark.parametrize('content', ['', 'missing/iter_6.pth'])
def test_broken_last_checkpoint_falls_back_to_newest_step(tmp_path, content):
    for step in (2, 10, 4):
        (tmp_path / f'iter_{step}.pth').write_bytes(b'x')
    (tmp_path / 'best_mIoU_iter_12.pth').write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(content)
    assert ckpt_module.find_latest_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_10.pth')


def test_last_checkpoint_is_kept_when_it_names_a_file(tmp_path):
    for step in (2, 4):
        (tmp_path / f'iter_{step}.pth').write_bytes(b'x')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert ckpt_module.find_latest_checkpoint(str(tmp_path)) == \
        str(tmp_path / 'iter_2.pth')
    os.remove(tmp_path / 'last_checkpoint')
    assert ckpt_module.find_latest_checkpoint(str(tmp_path)) is None


def test_empty_last_checkpoint_without_checkpoints_starts_afresh(tmp_path):
    (tmp_path / 'last_checkpoint').write_text('')
    assert ckpt_module.find_latest_checkpoint(str(tmp_path)) is None


def test_truncated_checkpoint_error_names_the_file(tmp_path):
    path = tmp_path / 'iter_2.pth'
    ckpt_module.save_checkpoint({'w': torch.ones(100)}, str(path))
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 10):
        path.write_bytes(data[:size])
        with pytest.raises(RuntimeError,
                           match=f'checkpoint {path} is truncated'):
            ckpt_module._load_checkpoint(str(path), map_location='cpu')
