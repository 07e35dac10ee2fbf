"""Build a model from a config and load a checkpoint into it, outside a
runner (analysis and benchmark tools)."""
import copy
import logging
import re
from typing import Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

from .device_config import adapt_config_to_device

#: Prefix DDP-wrapped models leave on saved keys.
_WRAPPER_KEY_PREFIX = re.compile(r'^module\.')


def load_state_into(model: nn.Module, checkpoint: str) -> dict:
    """Load a checkpoint file (or URL) into ``model``; return its ``meta``.

    Accepts mmengine checkpoints (``{'state_dict': ...}``) and bare state
    dicts. Semi-supervised wrappers expand a plain mmseg checkpoint into
    every teacher and student themselves (``SemiBaseSegmentor``).

    Keys of the checkpoint that the model lacks are reported as a warning.

    Raises:
        KeyError: The checkpoint leaves tensors of the model unset; the
            message names the checkpoint and some of the missing keys.
    """
    loaded = _load_checkpoint(checkpoint, map_location='cpu')
    state = loaded.get('state_dict', loaded) if isinstance(loaded,
                                                           dict) else None
    if not isinstance(state, dict):
        raise TypeError(f'checkpoint {checkpoint} holds a '
                        f'{type(loaded).__name__}, not a state dict')
    state = {_WRAPPER_KEY_PREFIX.sub('', k): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise KeyError(
            f'checkpoint {checkpoint} does not fill {len(missing)} tensor(s) '
            f'of the {type(model).__name__} built from the config, e.g. '
            f'{missing[:3]}; do the config and the checkpoint match?')
    if unexpected:
        print_log(
            f'checkpoint {checkpoint}: {len(unexpected)} key(s) not used by '
            f'the model, e.g. {unexpected[:3]}',
            logger='current',
            level=logging.WARNING)
    meta = loaded.get('meta') if 'state_dict' in loaded else None
    return dict(meta or {})


def build_model_from_checkpoint(cfg: Config,
                                checkpoint: str,
                                device: str = 'cpu'
                                ) -> Tuple[nn.Module, dict]:
    """``cfg.model`` built in the config's default scope, with the
    checkpoint's weights, on ``device``, in eval mode; and the checkpoint's
    ``meta`` (``iter``, ``dataset_meta``... for mmengine checkpoints).

    SyncBN becomes BN when there is no GPU (:func:`adapt_config_to_device`);
    ``cfg`` itself is not modified.
    """
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg = adapt_config_to_device(copy.deepcopy(cfg))
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    meta = load_state_into(model, checkpoint)
    return model.to(torch.device(device)).eval(), meta
