"""Make a config runnable on the machine at hand (CPU-only included)."""
import logging
from typing import Any

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

#: Normalisation layers that only run on GPUs, and their CPU replacement.
GPU_ONLY_NORMS = {'SyncBN': 'BN', 'MMSyncBN': 'BN'}


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
