"""Compatibility patches for the pinned OpenMMLab stack on current torch.

Applied once, on ``import mmseg_semi``, and only to mmengine up to
:data:`PATCHED_MMENGINE` (0.10.7, the version they were written and tested
for; a later mmengine is left alone):

* torch>=2.6 loads checkpoints with ``weights_only=True`` by default.
  mmengine 0.10.7 saves its message hub (``HistoryBuffer``), numpy scalars and
  config objects in checkpoint meta, so ``--resume`` and ``load_from`` fail
  (open-mmlab/mmengine#1655). mmengine's local and http checkpoint loaders
  are re-registered to load with ``weights_only=False`` (the files are the
  user's own or model-zoo checkpoints, which mmengine trusted before torch
  2.6).
* setuptools>=82 removed ``pkg_resources``, which mmengine 0.10.7's config
  uses to locate packages for ``mmseg::`` inheritance (replaced upstream by
  ``importlib`` in open-mmlab/mmengine#1676, after 0.10.7). The two helpers
  it imports are replaced by ``importlib.metadata`` versions.
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
import os.path as osp

import torch

_APPLIED = False
#: The newest mmengine the patches were written for.
PATCHED_MMENGINE = '0.10.7'


@contextlib.contextmanager
def trusted_torch_load():
    """Within the block, ``torch.load`` defaults to ``weights_only=False``."""
    original = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def _trusting(loader):

    @functools.wraps(loader)
    def trusted_loader(*args, **kwargs):
        with trusted_torch_load():
            return loader(*args, **kwargs)

    return trusted_loader


def _patch_checkpoint_loaders():
    from mmengine.runner import checkpoint as ckpt_module
    from mmengine.runner.checkpoint import CheckpointLoader
    schemes = {
        '': 'load_from_local',
        ('http://', 'https://'): 'load_from_http',
    }
    for prefixes, name in schemes.items():
        loader = _trusting(getattr(ckpt_module, name))
        setattr(ckpt_module, name, loader)
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
    _patch_checkpoint_loaders()
    _patch_package_lookup()
    _patch_cpu_launcher()
