"""Crash-safe checkpoint writes for mmengine <= 0.10.7.

mmengine 0.10.7's ``save_checkpoint`` serialises a checkpoint and hands the
bytes to ``LocalBackend.put``, which opens the final path (``iter_N.pth``)
with ``'wb'`` and writes it in place; ``CheckpointHook`` then rewrites
``last_checkpoint`` the same way. A process killed during either write
leaves a truncated ``iter_N.pth`` (named by ``last_checkpoint`` if the kill
came later, so ``--resume`` fails on it) or an empty ``last_checkpoint``
(``--resume`` then looks for a checkpoint named ``''``).

:func:`save_checkpoint` writes local checkpoints to ``<path>.part`` in the
same folder, fsyncs it and renames it into place, so an ``iter_N.pth`` that
exists is complete, and ``last_checkpoint``, written after the rename,
never names an incomplete file. :func:`find_latest_checkpoint` covers the
kill while ``last_checkpoint`` itself is being rewritten: an empty file, or
one naming a missing checkpoint, falls back to the newest ``iter_N.pth`` /
``epoch_N.pth`` of the work dir. Other storage backends are left to
mmengine.
"""
import io
import os
import os.path as osp
import re
from typing import Optional

import torch

#: Suffix of the file a checkpoint is written to before its rename.
PARTIAL_SUFFIX = '.part'

_STEP_CHECKPOINT = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')


def _fsync_dir(path: str) -> None:
    """Persist a rename: the new directory entry lives in the folder."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that the file is absent, its previous
    version, or complete, whenever the process dies."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = path + PARTIAL_SUFFIX
    with open(partial, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_dir(folder)


def _is_local(filename: str, file_client_args, backend_args) -> bool:
    from mmengine.fileio import LocalBackend, get_file_backend
    if file_client_args is not None or '://' in filename:
        return False
    backend = get_file_backend(filename, backend_args=backend_args)
    return isinstance(backend, LocalBackend)


def patch_checkpoint_writes() -> None:
    """Make mmengine's runner save local checkpoints atomically and resume
    past an empty ``last_checkpoint``."""
    import mmengine.runner as runner_pkg
    import mmengine.runner._flexible_runner as flexible_runner
    import mmengine.runner.checkpoint as ckpt_module
    import mmengine.runner.runner as runner_module
    original_save = ckpt_module.save_checkpoint
    original_find = ckpt_module.find_latest_checkpoint

    def save_checkpoint(checkpoint,
                        filename,
                        file_client_args=None,
                        backend_args=None):
        """mmengine's ``save_checkpoint``, atomic for local files."""
        if not _is_local(filename, file_client_args, backend_args):
            return original_save(checkpoint, filename, file_client_args,
                                 backend_args)
        with io.BytesIO() as buffer:
            torch.save(checkpoint, buffer)
            write_atomically(buffer.getvalue(), filename)

    def find_latest_checkpoint(path: str) -> Optional[str]:
        """mmengine's look-up, or the newest step checkpoint of ``path``
        when ``last_checkpoint`` is empty or names a missing file."""
        latest = original_find(path)
        if latest is None or (latest and osp.isfile(latest)):
            return latest
        steps = [(int(m.group(1)), name) for name in os.listdir(path)
                 for m in [_STEP_CHECKPOINT.match(name)] if m]
        if not steps:
            return latest or None  # mmengine's error names a missing file
        return osp.join(path, max(steps)[1])

    for module in (ckpt_module, runner_module, runner_pkg):
        module.save_checkpoint = save_checkpoint
    for module in (ckpt_module, runner_module, runner_pkg, flexible_runner):
        module.find_latest_checkpoint = find_latest_checkpoint
