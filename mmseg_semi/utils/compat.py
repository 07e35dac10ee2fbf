"""Compatibility patches for the pinned OpenMMLab stack on current torch.

Applied once, on ``import mmseg_semi``, so users need no environment
variables:

* torch>=2.6 loads checkpoints with ``weights_only=True`` by default.
  mmengine 0.10.7 saves its message hub (``HistoryBuffer``), numpy scalars and
  config objects in checkpoint meta, so ``--resume`` and ``load_from`` fail.
  mmengine's local and http checkpoint loaders are re-registered to load with
  ``weights_only=False`` (the files are the user's own or model-zoo
  checkpoints, which mmengine trusted before torch 2.6).
* setuptools>=81 removed ``pkg_resources``, which mmengine's config uses to
  locate packages for ``mmseg::`` inheritance. The two helpers it imports are
  replaced by ``importlib.metadata`` versions.
* mmengine's PyTorch launcher calls ``torch.cuda.set_device`` even when the
  process group uses gloo on a CPU-only machine; the call is skipped there.
* mmseg 1.2.2's ``cross_entropy`` with ``class_weight`` indexes the weights
  with every label, ignore index included, so any 255 pixel raises
  IndexError (and it loops in Python over the batch). Its normaliser is
  computed here instead, vectorised: the sum of the class weights of the
  non-ignored pixels, PyTorch's weighted mean.
"""
import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import os.path as osp

import torch

_APPLIED = False


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


def class_weighted_avg_factor(label: torch.Tensor,
                              class_weight: torch.Tensor,
                              ignore_index: int) -> torch.Tensor:
    """Sum of ``class_weight[label]`` over the pixels not ignored."""
    valid = label != ignore_index
    safe_label = torch.where(valid, label, torch.zeros_like(label))
    return (class_weight[safe_label] * valid).sum()


def _patch_class_weighted_cross_entropy():
    import mmseg.models.losses as losses_package
    import mmseg.models.losses.cross_entropy_loss as ce_module
    original = ce_module.cross_entropy

    @functools.wraps(original)
    def cross_entropy(pred,
                      label,
                      weight=None,
                      class_weight=None,
                      reduction='mean',
                      avg_factor=None,
                      ignore_index=-100,
                      avg_non_ignore=False):
        if class_weight is not None and avg_factor is None \
                and reduction == 'mean':
            avg_factor = class_weighted_avg_factor(label, class_weight,
                                                   ignore_index)
        return original(pred, label, weight, class_weight, reduction,
                        avg_factor, ignore_index, avg_non_ignore)

    ce_module.cross_entropy = cross_entropy
    losses_package.cross_entropy = cross_entropy


def apply_compat_patches() -> None:
    """Apply every patch once; safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_checkpoint_loaders()
    _patch_package_lookup()
    _patch_cpu_launcher()
    _patch_class_weighted_cross_entropy()
    _APPLIED = True
