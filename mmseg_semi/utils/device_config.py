"""Make a config runnable on the machine at hand (CPU-only included)."""
import logging
from typing import Any, Union

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

#: Normalisation layers that only run on GPUs, and their CPU replacement.
GPU_ONLY_NORMS = {'SyncBN': 'BN', 'MMSyncBN': 'BN'}
#: Config types of mmcv ops compiled for CUDA only (no CPU kernel in mmcv
#: 2.1: they fail mid-forward with "implementation for device cpu not
#: found"), and what they are.
GPU_ONLY_OPS = {
    'carafe': 'mmcv CARAFE upsampling',
    'CARAFE': 'mmcv CARAFE upsampling',
    'CARAFEPack': 'mmcv CARAFE upsampling',
}


def replace_norm_types(node: Any, mapping: dict) -> int:
    """Rewrite ``type`` of norm configs in place; returns how many changed."""
    changed = 0
    if isinstance(node, dict):
        # Any SyncBN config: ``requires_grad`` is optional (mmcv defaults it
        # to True), so ``dict(type='SyncBN')`` must be replaced as well.
        if node.get('type') in mapping:
            node['type'] = mapping[node['type']]
            changed += 1
        for value in node.values():
            changed += replace_norm_types(value, mapping)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += replace_norm_types(value, mapping)
    return changed


def adapt_config_to_device(cfg: Config) -> Config:
    """Use gloo, plain BN and CPU DDP when no GPU is present.

    mmseg configs ask for SyncBN and NCCL, which need GPUs; on a CPU-only
    machine the run would fail inside torch. SyncBN becomes BN (single
    process runs get the same from mmengine), the process group uses gloo,
    and DDP gets ``device_ids=None`` (mmengine passes ``[LOCAL_RANK]``, which
    DDP rejects for CPU modules).
    """
    if torch.cuda.is_available():
        return cfg
    # Not ``setdefault``: a ConfigDict stores a converted copy of the default
    # and returns the original, so writes to it would be lost.
    dist_cfg = (cfg.get('env_cfg') or {}).get('dist_cfg') or {}
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        cfg.merge_from_dict({'env_cfg.dist_cfg.backend': 'gloo'})
    use_cpu_ddp(cfg)
    use_cpu_amp(cfg)
    gpu_only = find_types(cfg.get('model'), GPU_ONLY_OPS, 'model')
    if gpu_only:
        key, op = gpu_only[0]
        raise ValueError(
            f'{key}={op!r} is a GPU-only op ({GPU_ONLY_OPS[op]}) and there '
            'is no GPU; replace it (e.g. bilinear upsampling) or train on a '
            f'GPU ({len(gpu_only)} such key(s) in the config)')
    changed = replace_norm_types(cfg.get('model'), GPU_ONLY_NORMS)
    if changed:
        print_log(
            f'No GPU: {changed} SyncBN layer config(s) replaced by BN and '
            'the process group uses gloo',
            logger='current',
            level=logging.WARNING)
    return cfg


def use_cpu_ddp(cfg: Config) -> None:
    """``model_wrapper_cfg`` that wraps CPU modules in DDP (only used by
    distributed runs): mmengine's default with ``device_ids=None``."""
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        return
    wrapper_type = MODEL_WRAPPERS.get(
        wrapper.get('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(
            wrapper_type, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)


def find_types(node: Any, types: dict, path: str) -> list:
    """``(key path, type)`` of every config dict whose type is in
    ``types``, e.g. ``('model.decode_head.upsample_cfg.type', 'carafe')``."""
    found = []
    if isinstance(node, dict):
        if node.get('type') in types:
            found.append((f'{path}.type', node['type']))
        for key, value in node.items():
            found += find_types(value, types, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found += find_types(value, types, f'{path}[{index}]')
    return found


def use_cpu_amp(cfg: Config) -> None:
    """mmengine's ``AmpOptimWrapper`` (``--amp``) refuses CPUs: use
    ``AnyDeviceAmpOptimWrapper``, which autocasts to bfloat16 on CPU and
    raises, naming ``optim_wrapper.dtype``, for GPU-only float16."""
    wrapper = cfg.get('optim_wrapper')
    if not wrapper or wrapper.get('type') not in ('AmpOptimWrapper',
                                                  'mmengine.AmpOptimWrapper'):
        return
    cpu_autocast_dtype(wrapper.get('dtype'))  # float16: clear error here
    wrapper.type = 'AnyDeviceAmpOptimWrapper'
    print_log(
        'No GPU: AmpOptimWrapper replaced by AnyDeviceAmpOptimWrapper '
        '(bfloat16 autocast on CPU)',
        logger='current',
        level=logging.WARNING)


def cpu_autocast_dtype(dtype: Union[str, torch.dtype, None]) -> torch.dtype:
    """bfloat16 for None or bfloat16; anything else is refused on CPU."""
    if dtype is None:
        return torch.bfloat16
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) \
        else dtype
    if resolved != torch.bfloat16:
        raise ValueError(
            f'optim_wrapper.dtype={dtype!r}: CPU autocast supports only '
            "'bfloat16' (float16 mixed precision is GPU-only); set "
            "optim_wrapper.dtype='bfloat16' or train on a GPU")
    return resolved
