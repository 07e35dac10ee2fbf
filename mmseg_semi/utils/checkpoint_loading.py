"""Checkpoints outside mmengine's runner: build a model from a config and
load a checkpoint into it (analysis and benchmark tools), and RML's
stage-2 initialisation from a stage-1 checkpoint."""
import copy
import logging
import os.path as osp
import re
from typing import Sequence, Tuple

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
    state = strip_wrapper_prefix(state)
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


def strip_wrapper_prefix(state: dict) -> dict:
    """Drop the ``module.`` prefix DDP-wrapped models save."""
    return {_WRAPPER_KEY_PREFIX.sub('', k): v for k, v in state.items()}


def stage2_state_dict(state: dict,
                      teacher_student_names: Sequence[Tuple[str, str]],
                      kept_prefixes: Sequence[str] = ()) -> dict:
    """Initial state of RML's stage 2 from a stage-1 state dict.

    RML trains in two stages; the second starts both the students and the
    teachers from the first stage's teachers. Every ``<teacher>.k`` tensor
    becomes ``<teacher>.k`` and ``<student>.k``; stage-1 students are
    dropped. Tensors under ``kept_prefixes`` (e.g. the rectifiers, whose
    prototypes live in the teachers' feature spaces) are kept as they are.

    Args:
        state: Stage-1 state dict (wrapper keys, no ``module.``).
        teacher_student_names: ``(teacher, student)`` attribute pairs.
        kept_prefixes: Attribute names whose tensors are carried over.

    Returns:
        A new state dict; tensors are shared with ``state``, not copied.
    """
    result = {}
    for teacher, student in teacher_student_names:
        prefix = f'{teacher}.'
        weights = {
            key[len(prefix):]: value
            for key, value in state.items() if key.startswith(prefix)
        }
        if not weights:
            raise KeyError(
                f'the stage-1 checkpoint has no {teacher!r} weights (keys '
                f'starting with {prefix!r}); its keys start with e.g. '
                f'{sorted({k.split(".")[0] for k in state})[:5]}')
        for name in (teacher, student):
            result.update({f'{name}.{key}': v for key, v in weights.items()})
    for name in kept_prefixes:
        kept = {k: v for k, v in state.items() if k.startswith(f'{name}.')}
        if not kept:
            raise KeyError(
                f'the stage-1 checkpoint has no {name!r} state; set '
                'stage2_init.load_rectifiers=False to start with empty '
                'prototypes')
        result.update(kept)
    return result


def load_stage2_state(model: nn.Module,
                      checkpoint: str,
                      teacher_student_names: Sequence[Tuple[str, str]],
                      rectifier_names: Sequence[str],
                      load_rectifiers: bool = True) -> None:
    """Start every teacher and student of ``model`` from a stage-1
    checkpoint's teachers (RML's two-stage training), and with
    ``load_rectifiers`` the named rectifiers from its prototypes."""
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'stage2_init checkpoint={checkpoint!r} does not exist; '
            'train stage 1 first and point stage2_init.checkpoint at its '
            'checkpoint')
    loaded = _load_checkpoint(checkpoint, map_location='cpu')
    state = strip_wrapper_prefix(loaded.get('state_dict', loaded))
    kept = list(rectifier_names) if load_rectifiers else []
    init_state = stage2_state_dict(state, teacher_student_names, kept)
    missing, _ = model.load_state_dict(init_state, strict=False)
    expected = tuple(f'{name}.' for pair in teacher_student_names
                     for name in pair) + tuple(f'{name}.' for name in kept)
    missing = [key for key in missing if key.startswith(expected)]
    if missing:
        raise KeyError(
            f'stage2_init checkpoint={checkpoint!r} does not fill '
            f'{len(missing)} tensor(s) of this model, e.g. '
            f'{missing[:3]}; was it written by a DualStudentSegmentor '
            'of the same architectures?')
