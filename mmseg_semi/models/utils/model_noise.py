"""RML's model noise for the students: classifier dropout, stochastic depth.

Zhang et al., "Robust Mutual Learning for Semi-supervised Semantic
Segmentation", 2021 (arXiv 2106.00609): model noise weakens the coupling of
the two mutual learners. Following Noisy Student (Xie et al., 2020), the
students get dropout (rate 0.5) before the final classifier and stochastic
depth in the backbone with survival probability 0.8.

Both modifications leave ``state_dict`` keys untouched, so model-zoo and
project checkpoints load as before:

* dropout replaces the parameter-free ``dropout`` module that mmseg's
  ``BaseDecodeHead.cls_seg`` already applies before ``conv_seg``;
* stochastic depth is a forward hook on the last normalisation layer of
  each residual block, whose output is exactly the residual branch just
  before ``out += identity``. Scaling it by a per-sample Bernoulli mask
  drops the branch while keeping the shortcut, without re-implementing the
  blocks' forward (so ``with_cp``, DCN and ResNeSt's split attention keep
  working).

Both are active only in training mode. The hooks survive ``copy.deepcopy``,
so a mean teacher deep-copied from a noisy student carries them too, inert
while the teacher is in eval mode.
"""
from typing import List, Optional, Tuple

from mmseg.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor, nn

from ...utils.arg_checks import check_choice, check_int, check_number

DROP_PATH_SCHEDULES = ('linear', 'uniform')


def stochastic_depth_drop_probs(num_blocks: int,
                                drop_prob: float,
                                schedule: str = 'linear') -> List[float]:
    """Drop probability of each residual block, first to last.

    ``'linear'`` is the linear decay rule of Huang et al. (2016) used by
    Noisy Student: block ``l`` of ``L`` (1-based) is dropped with probability
    ``drop_prob * l / L``, so the last block has survival ``1 - drop_prob``
    (0.8 in RML) and early, low-level blocks are rarely dropped.
    ``'uniform'`` drops every block with ``drop_prob``.

    Args:
        num_blocks: Number of residual blocks ``L`` (>= 0).
        drop_prob: Drop probability of the last block, in [0, 1].
        schedule: ``'linear'`` or ``'uniform'``.

    Returns:
        ``L`` floats in [0, drop_prob].
    """
    check_int('num_blocks', num_blocks, minimum=0)
    check_number('drop_prob', drop_prob, 0, 1)
    check_choice('schedule', schedule, DROP_PATH_SCHEDULES)
    if schedule == 'uniform':
        return [float(drop_prob)] * num_blocks
    return [
        drop_prob * (index + 1) / num_blocks for index in range(num_blocks)
    ]


class ResidualBranchDrop:
    """Forward hook dropping a residual branch per sample (stochastic depth).

    Registered on the last normalisation layer of a residual block, whose
    output is the residual branch. In training it multiplies the branch by a
    per-sample Bernoulli(``1 - drop_prob``) mask divided by
    ``1 - drop_prob`` (inverted scaling, as in timm's ``DropPath``), so the
    expected output equals the plain block and evaluation needs no
    rescaling; in eval mode the block is untouched.

    The block's training flag is read instead of the norm layer's, because
    ``norm_eval=True`` puts the BN layers of a training backbone in eval
    mode.

    Args:
        block: The residual block whose branch is dropped.
        drop_prob: Probability of dropping the branch, in [0, 1].
    """

    def __init__(self, block: nn.Module, drop_prob: float) -> None:
        self.block = block
        self.drop_prob = float(drop_prob)

    def __call__(self, module: nn.Module, inputs: Tuple[Tensor, ...],
                 output: Tensor) -> Optional[Tensor]:
        if not self.block.training or self.drop_prob == 0.0:
            return None
        keep_prob = 1.0 - self.drop_prob
        if keep_prob == 0.0:
            # Always dropped; multiplying keeps the autograd graph intact.
            return output * 0.0
        mask_shape = (output.shape[0], ) + (1, ) * (output.dim() - 1)
        keep_mask = output.new_empty(mask_shape).bernoulli_(keep_prob)
        return output * keep_mask / keep_prob


def add_classifier_dropout(segmentor: nn.Module,
                           p: float = 0.5,
                           include_auxiliary: bool = True) -> nn.Module:
    """Set the dropout before the classifier of every decode head.

    mmseg's ``BaseDecodeHead.cls_seg`` applies ``self.dropout`` (when not
    None) right before ``conv_seg``; it is replaced by ``nn.Dropout2d(p)``
    (channel dropout, as mmseg itself uses), or None for ``p == 0``.
    Cascade segmentors' lists of heads are handled.

    Args:
        segmentor: An mmseg segmentor with ``decode_head`` (and optionally
            ``auxiliary_head``), each a head or an ``nn.ModuleList``.
        p: Dropout probability in [0, 1]; 0.5 in RML.
        include_auxiliary: Also set the auxiliary heads' dropout.

    Returns:
        The same segmentor, modified in place.
    """
    check_number('p', p, 0, 1)
    heads = _heads_of(segmentor, 'decode_head', required=True)
    if include_auxiliary:
        heads += _heads_of(segmentor, 'auxiliary_head', required=False)
    for head in heads:
        if not isinstance(head, BaseDecodeHead):
            raise TypeError(
                f'add_classifier_dropout supports subclasses of mmseg '
                f'BaseDecodeHead, got {type(head).__name__}')
        head.dropout = nn.Dropout2d(p) if p > 0 else None
        head.dropout_ratio = p
    return segmentor


def add_stochastic_depth(backbone: nn.Module,
                         drop_prob: float = 0.2,
                         schedule: str = 'linear') -> List[float]:
    """Add stochastic depth to the residual blocks of an mmseg ResNet.

    Supports mmseg's ``ResNet`` and its subclasses (``ResNetV1c``,
    ``ResNetV1d``, ``ResNeXt``, ``ResNeSt``) built from ``BasicBlock`` or
    ``Bottleneck``. Calling it again re-configures the existing hooks
    instead of stacking new ones.

    Args:
        backbone: The backbone module.
        drop_prob: Drop probability of the last block (RML: survival 0.8,
            so 0.2), in [0, 1].
        schedule: How the other blocks' probabilities follow, see
            :func:`stochastic_depth_drop_probs`.

    Returns:
        The drop probability given to each block, first to last.
    """
    if not isinstance(backbone, ResNet):
        raise TypeError(
            f'add_stochastic_depth supports mmseg ResNet backbones (ResNet, '
            f'ResNetV1c, ResNetV1d, ResNeXt, ResNeSt), got '
            f'{type(backbone).__name__}')
    blocks = [
        block for layer_name in backbone.res_layers
        for block in getattr(backbone, layer_name)
    ]
    drop_probs = stochastic_depth_drop_probs(len(blocks), drop_prob, schedule)
    for block, block_drop_prob in zip(blocks, drop_probs):
        hook = getattr(block, 'residual_branch_drop', None)
        if isinstance(hook, ResidualBranchDrop):
            hook.drop_prob = block_drop_prob
            continue
        hook = ResidualBranchDrop(block, block_drop_prob)
        _last_residual_norm(block).register_forward_hook(hook)
        # Kept on the block so a second call finds and re-configures it.
        block.residual_branch_drop = hook
    return drop_probs


def apply_model_noise(segmentor: nn.Module,
                      dropout: float = 0.5,
                      drop_path: float = 0.2,
                      drop_path_schedule: str = 'linear') -> nn.Module:
    """Apply RML's student model noise to an mmseg segmentor.

    Args:
        segmentor: An mmseg segmentor (``backbone``, ``decode_head``).
        dropout: Dropout before the classifier of every head.
        drop_path: Stochastic depth drop probability of the backbone's last
            block. 0 leaves the backbone alone, which is what backbones with
            their own ``drop_path_rate`` argument (e.g. the project's
            EfficientNet-Lite) need; any other value requires an mmseg
            ResNet-family backbone.
        drop_path_schedule: ``'linear'`` or ``'uniform'``.

    Returns:
        The same segmentor, modified in place.
    """
    check_number('drop_path', drop_path, 0, 1)
    add_classifier_dropout(segmentor, dropout)
    if drop_path > 0:
        backbone = getattr(segmentor, 'backbone', None)
        if backbone is None:
            raise TypeError(f'{type(segmentor).__name__} has no backbone to '
                            f'add stochastic depth to')
        add_stochastic_depth(backbone, drop_path, drop_path_schedule)
    return segmentor


def _last_residual_norm(block: nn.Module) -> nn.Module:
    """The norm layer whose output is the block's whole residual branch."""
    if isinstance(block, Bottleneck):
        if getattr(block, 'with_plugins', False) \
                and block.after_conv3_plugin_names:
            # Those plugins add their input back, so dropping their input
            # would not drop the branch.
            raise ValueError(
                f'stochastic depth does not support {type(block).__name__} '
                f'blocks with after_conv3 plugins')
        return block.norm3
    if isinstance(block, BasicBlock):
        return block.norm2
    raise TypeError(f'add_stochastic_depth supports mmseg BasicBlock and '
                    f'Bottleneck blocks, got {type(block).__name__}')


def _heads_of(segmentor: nn.Module, name: str,
              required: bool) -> List[nn.Module]:
    head = getattr(segmentor, name, None)
    if head is None:
        if required:
            raise TypeError(f'{type(segmentor).__name__} has no {name}')
        return []
    if isinstance(head, nn.ModuleList):
        return list(head)
    return [head]
