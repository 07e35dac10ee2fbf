"""Compatibility patches for the pinned OpenMMLab stack on current torch.

Applied once, on ``import mmseg_semi``, and only to mmengine up to
:data:`PATCHED_MMENGINE` (0.10.7, the version they were written and tested
for; a later mmengine is left alone):

* torch>=2.6 loads checkpoints with ``weights_only=True`` by default, which
  refuses what mmengine 0.10.7's runner pickles besides tensors (message hub
  ``HistoryBuffer`` objects, numpy scalars and arrays), so ``--resume`` and
  ``load_from`` fail (open-mmlab/mmengine#1655). mmengine's local and http
  checkpoint loaders are replaced by ones that keep ``weights_only=True``
  (torch.hub's http loader defaults to ``False``: it is turned on there) and,
  for the duration of each load, allow exactly those types
  (:func:`mmengine_checkpoint_globals`). torch keeps its allowlist
  process-wide, so the entries are added and removed under a lock around the
  load; ``torch.load`` itself is never replaced. A checkpoint that pickles
  anything else is refused with an error naming the types. A trusted legacy
  file (e.g. one with a custom hook's objects) is loaded fully, which can
  run code it contains, only when listed in the environment variable
  ``MMSEG_SEMI_TRUSTED_CHECKPOINTS`` (comma-separated paths or URLs).
* setuptools>=82 removed ``pkg_resources``, which mmengine 0.10.7's config
  uses to locate packages for ``mmseg::`` inheritance (replaced upstream by
  ``importlib`` in open-mmlab/mmengine#1676, after 0.10.7). The two helpers
  it imports are replaced by ``importlib.metadata`` versions. This helps
  only where mmseg_semi is imported before a config is read, as
  tools/train.py and tools/test.py do: mmengine resolves ``mmseg::`` bases
  before a config's ``custom_imports`` runs.
* mmengine 0.10.7 writes ``iter_N.pth`` and ``last_checkpoint`` in place,
  so a run killed during a checkpoint write cannot ``--resume``: local
  checkpoints are written to a temporary file, fsynced and renamed into
  place (:mod:`mmseg_semi.utils.atomic_checkpoint`), and a truncated
  checkpoint given to ``load_from`` is refused with an error naming it.
* mmengine 0.10.7's PyTorch launcher (``mmengine.dist.utils.
  _init_dist_pytorch``) calls ``torch.cuda.set_device`` even when the
  process group uses gloo on a CPU-only machine; the call is skipped there.

mmseg's own behaviour is not patched: class-weighted cross-entropy, which
mmseg 1.2.2 cannot compute on labels with ignored pixels, is the registered
loss ``ClassWeightedCrossEntropyLoss`` that configs name.
"""
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import os.path as osp
import pickle
import threading
import zipfile
from urllib.parse import urlparse

import torch

from .atomic_checkpoint import patch_checkpoint_writes

_APPLIED = False
#: The newest mmengine the patches were written for.
PATCHED_MMENGINE = '0.10.7'


#: Environment variable listing checkpoints (comma-separated paths or URLs)
#: trusted to be unpickled fully, i.e. allowed to run code when loaded.
TRUSTED_CHECKPOINTS_ENV = 'MMSEG_SEMI_TRUSTED_CHECKPOINTS'

#: Serialises the loads that extend torch's process-wide allowlist, so that
#: one load's exit cannot remove entries another load still needs.
_SAFE_GLOBALS_LOCK = threading.RLock()


def _pickled_attributes() -> tuple:
    """The ``getattr(owner, name)`` calls pickle writes for the functions
    mmengine keeps in its state: the statistics methods each
    ``HistoryBuffer`` stores, and OneCycleLR's annealing function."""
    from mmengine.logging import HistoryBuffer
    from mmengine.optim.scheduler.param_scheduler import \
        OneCycleParamScheduler
    return ((HistoryBuffer, ('min', 'max', 'current', 'mean')),
            (OneCycleParamScheduler, ('_annealing_cos', '_annealing_linear')))


def _checkpoint_getattr(owner, name):
    """``getattr`` limited to :func:`_pickled_attributes`: a free
    ``getattr`` would let a checkpoint reach any attribute of the allowed
    objects."""
    for cls, names in _pickled_attributes():
        if owner is cls and name in names:
            return getattr(owner, name)
    owner_name = getattr(owner, '__qualname__', type(owner).__qualname__)
    raise pickle.UnpicklingError(
        f'builtins.getattr({owner_name}, {name!r}) is not an attribute '
        'look-up that mmengine checkpoints contain')


@functools.lru_cache(maxsize=None)
def mmengine_checkpoint_globals() -> tuple:
    """What mmengine 0.10.7 pickles into its checkpoints besides tensors and
    builtins, as ``torch.serialization.safe_globals`` entries.

    Found by listing ``torch.serialization.get_unsafe_globals_in_checkpoint``
    of mean teacher, U2PL, RML and supervised runs and of mmengine's
    parameter schedulers: ``HistoryBuffer`` (message hub), numpy arrays,
    scalars and the dtypes of numbers (numpy 1 and 2 module names),
    OneCycleLR's scheduler class, and the attribute look-ups of
    :func:`_checkpoint_getattr`.
    """
    import numpy as np
    entries = [cls for cls, _ in _pickled_attributes()]
    entries += [
        np.ndarray, np.dtype, (_checkpoint_getattr, 'builtins.getattr')
    ]
    # The callables numpy's own pickles rebuild scalars and arrays with.
    rebuilders = (np.float64(0).__reduce__()[0], np.zeros(0).__reduce__()[0])
    for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries += [(fn, f'{module}.{fn.__name__}') for fn in rebuilders]
    codes = np.typecodes['AllInteger'] + np.typecodes['AllFloat'] + '?'
    entries += sorted({type(np.dtype(code)) for code in codes}, key=str)
    return tuple(entries)


@contextlib.contextmanager
def mmengine_checkpoint_globals_allowed():
    """Within the block, ``torch.load(..., weights_only=True)`` accepts
    :func:`mmengine_checkpoint_globals`; entries a user had allowed before
    stay allowed after it."""
    with _SAFE_GLOBALS_LOCK:
        present = torch.serialization.get_safe_globals()
        added = [g for g in mmengine_checkpoint_globals() if g not in present]
        with torch.serialization.safe_globals(added):
            yield


def _trusted_checkpoints() -> set:
    entries = os.environ.get(TRUSTED_CHECKPOINTS_ENV, '').split(',')
    return {_source_key(entry.strip()) for entry in entries if entry.strip()}


def _source_key(source: str) -> str:
    return source if '://' in source else osp.realpath(osp.expanduser(source))


def _refused_globals(path: str) -> str:
    """The globals of ``path`` outside the allowlist, for the error."""
    try:
        with mmengine_checkpoint_globals_allowed():
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (OSError, ValueError, RuntimeError):
        names = []  # not a zip checkpoint (torch<1.6 format) or no file
    if not names:
        return 'objects a weights-only load refuses (see the error above)'
    return ', '.join(sorted(names))


def _load_weights_only(source: str, load, local_path: str):
    """``load(weights_only)`` with mmengine's types allowed, or unrestricted
    for a source listed in :data:`TRUSTED_CHECKPOINTS_ENV`."""
    if _source_key(source) in _trusted_checkpoints():
        from mmengine.logging import print_log
        print_log(
            f'{source} is listed in {TRUSTED_CHECKPOINTS_ENV}: loading it '
            'with weights_only=False',
            logger='current',
            level=logging.WARNING)
        return load(False)
    try:
        with mmengine_checkpoint_globals_allowed():
            return load(True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f'checkpoint {source} needs {_refused_globals(local_path)} to '
            'be unpickled; mmseg_semi loads checkpoints with '
            'weights_only=True, which allows besides tensors only what '
            'mmengine writes (numpy scalars and arrays, message hub '
            'buffers). Loading the file fully can run code it contains: '
            'only if you trust it, add it to the comma-separated '
            f'environment variable {TRUSTED_CHECKPOINTS_ENV}, e.g. '
            f'{TRUSTED_CHECKPOINTS_ENV}={_source_key(source)}') from error


def load_from_local(filename: str, map_location=None):
    """mmengine's local scheme, loaded with ``weights_only=True``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')

    def load(weights_only):
        try:
            return torch.load(
                filename, map_location=map_location,
                weights_only=weights_only)
        except (EOFError, OSError, RuntimeError) as error:
            if zipfile.is_zipfile(filename):
                raise  # a complete archive: not a truncation
            raise RuntimeError(
                f'checkpoint {filename} is truncated or corrupt (not a '
                f'complete torch archive: {error}); was its write '
                'interrupted? Resume from an earlier checkpoint') from error

    return _load_weights_only(filename, load, filename)


def load_from_http(filename: str,
                   map_location=None,
                   model_dir=None,
                   progress: bool = os.isatty(0)):
    """mmengine's http(s) scheme (local rank 0 downloads first), loaded with
    ``weights_only=True``; torch.hub would default to ``False``."""
    from mmengine.dist import get_dist_info
    from torch.hub import load_state_dict_from_url
    cache_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = osp.join(cache_dir, osp.basename(urlparse(filename).path))

    def load(weights_only):
        return load_state_dict_from_url(
            filename,
            model_dir=model_dir,
            map_location=map_location,
            progress=progress,
            weights_only=weights_only)

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = _load_weights_only(filename, load, cached)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = _load_weights_only(filename, load, cached)
    return checkpoint


def _patch_checkpoint_loaders():
    from mmengine.runner import checkpoint as ckpt_module
    from mmengine.runner.checkpoint import CheckpointLoader
    schemes = {
        '': load_from_local,
        ('http://', 'https://'): load_from_http,
    }
    for prefixes, loader in schemes.items():
        # also as module globals: mmengine's open-mmlab:// and mmcls://
        # loaders call load_from_http
        setattr(ckpt_module, loader.__name__, loader)
        CheckpointLoader.register_scheme(prefixes=prefixes, force=True)(loader)


def is_installed(package: str) -> bool:
    """Whether ``package`` (a distribution or module name) is installed."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def get_installed_path(package: str) -> str:
    """Directory of an installed package, without ``pkg_resources``.

    ``package`` may be a distribution name (``mmsegmentation``) whose module
    name differs (``mmseg``); the distribution's ``top_level.txt`` maps them.
    """
    module = package
    try:
        dist = importlib.metadata.distribution(package)
        top_level = dist.read_text('top_level.txt')
        if top_level and top_level.split():
            module = top_level.split()[0]
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f'Package {package!r} is not installed (no module {module!r}).')
    return osp.dirname(spec.origin)


def _patch_package_lookup():
    import mmengine.config.config as config_module
    import mmengine.utils as mmengine_utils
    import mmengine.utils.package_utils as package_utils
    for module in (config_module, mmengine_utils, package_utils):
        module.is_installed = is_installed
        module.get_installed_path = get_installed_path


def _patch_cpu_launcher():
    import mmengine.dist.utils as dist_utils
    original = dist_utils._init_dist_pytorch

    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available():
            return original(backend, init_backend=init_backend, **kwargs)
        if backend == 'nccl':
            backend = 'gloo'  # nccl needs GPUs; gloo runs on CPU
        torch.distributed.init_process_group(backend=backend, **kwargs)

    dist_utils._init_dist_pytorch = init_dist_pytorch


def apply_compat_patches() -> None:
    """Apply every patch once; safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    _APPLIED = True
    import mmengine
    from mmengine.utils import digit_version
    if digit_version(mmengine.__version__) > digit_version(PATCHED_MMENGINE):
        return
    # torch<2.6 loads with weights_only=False by default: nothing breaks
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        _patch_checkpoint_loaders()
    _patch_package_lookup()
    _patch_cpu_launcher()
    patch_checkpoint_writes()
