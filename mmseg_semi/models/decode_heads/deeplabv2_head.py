"""DeepLabv2's classifier: atrous spatial pyramid pooling summed to logits.

Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional
Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2018, Sec. 3.3
(ASPP-L): parallel 3x3 classifiers with atrous rates 6, 12, 18 and 24 read
the backbone's last feature map, and their class scores are summed. There is
no decoder: the feature entering the classifier is the backbone feature
itself. RML (Zhang et al., 2021) uses this network on ResNet-101.
"""
from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from ...utils.arg_checks import check_int


def atrous_classifier_logits(feature: Tensor,
                             branches: Sequence[nn.Module]) -> Tensor:
    """DeepLabv2's fused score map: ``f = sum_r conv_r(x)``.

    Each ``conv_r`` is a 3x3 classifier with atrous rate ``r``; summing
    (rather than concatenating and projecting, as DeepLabv3's ASPP does) is
    the fusion of DeepLabv2 Sec. 3.3.

    Args:
        feature: (B, D, h, w) feature entering the classifier.
        branches: The per-rate classifiers, each (B, D, h, w) ->
            (B, C, h, w).

    Returns:
        (B, C, h, w) logits.
    """
    logits = branches[0](feature)
    for branch in branches[1:]:
        logits = logits + branch(feature)
    return logits


class AtrousClassifierSum(nn.Module):
    """Parallel dilated 3x3 convolutions whose outputs are summed.

    It takes the place of mmseg's 1x1 ``conv_seg``, so
    ``BaseDecodeHead.cls_seg`` (dropout, then ``conv_seg``) runs it, and
    code that looks at ``conv_seg`` finds ``in_channels``/``out_channels``
    as on a convolution. Padding equals the dilation, so every branch keeps
    the feature map's size.

    Args:
        in_channels: Channels ``D`` of the feature.
        out_channels: Number of classes ``C``.
        dilations: Atrous rate of each branch.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 dilations: Sequence[int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dilations = tuple(dilations)
        self.branches = nn.ModuleList(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size=3,
                padding=dilation,
                dilation=dilation) for dilation in self.dilations)

    def forward(self, feature: Tensor) -> Tensor:
        return atrous_classifier_logits(feature, self.branches)

    def extra_repr(self) -> str:
        return f'dilations={self.dilations}'


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """DeepLabv2's ASPP classifier as an mmseg decode head.

    The selected backbone feature goes through the optional dropout and
    then ``conv_seg``, an :class:`AtrousClassifierSum` (four dilated 3x3
    classifiers, summed). Because that is mmseg's ``cls_seg`` path, the
    package's feature capture (``capture_inputs``) returns the
    backbone feature, which the prototype rectifier and the U2PL
    representation head then use; RML's student dropout replaces
    ``self.dropout`` as for any mmseg head.

    Args:
        in_channels: Channels of the backbone feature (2048 for ResNet-101).
        dilations: Atrous rates of the branches; DeepLabv2's ASPP-L uses
            (6, 12, 18, 24).
        channels: Channels entering the classifier. DeepLabv2 has no layer
            between backbone and classifier, so it must equal the input's
            channels; None (default) takes them from ``in_channels``.
        **kwargs: Other :class:`BaseDecodeHead` arguments (``num_classes``,
            ``in_index``, ``dropout_ratio``, ``loss_decode``...). Note that
            DeepLabv2 itself has no dropout: configs set
            ``dropout_ratio=0.0``.
    """

    def __init__(self,
                 in_channels: Union[int, List[int]],
                 dilations: Sequence[int] = (6, 12, 18, 24),
                 channels: Optional[int] = None,
                 **kwargs) -> None:
        dilations = check_dilations(dilations)
        if kwargs.get('input_transform') == 'multiple_select':
            raise ValueError(
                "DeepLabV2Head classifies one feature map; "
                "input_transform='multiple_select' gives it several")
        input_channels = sum(in_channels) if isinstance(
            in_channels, (list, tuple)) else in_channels
        if channels is None:
            channels = input_channels
        elif channels != input_channels:
            raise ValueError(
                f'DeepLabV2Head channels={channels!r} must equal the input '
                f'feature channels {input_channels!r} (in_channels='
                f'{in_channels!r}): DeepLabv2 classifies the backbone '
                'feature directly')
        super().__init__(in_channels, channels, **kwargs)
        self.dilations = dilations
        self.conv_seg = AtrousClassifierSum(self.channels, self.out_channels,
                                            dilations)

    def forward(self, inputs: Tuple[Tensor, ...]) -> Tensor:
        """Logits at the backbone feature's resolution."""
        return self.cls_seg(self._transform_inputs(inputs))


def check_dilations(dilations) -> Tuple[int, ...]:
    """A non-empty sequence of positive int atrous rates."""
    if isinstance(dilations, (str, bytes)) or not isinstance(
            dilations, Sequence) or len(dilations) == 0:
        raise ValueError(
            'DeepLabV2Head dilations must be a non-empty sequence of '
            f'positive ints, got {dilations!r}')
    name = f'each of DeepLabV2Head dilations={tuple(dilations)!r}'
    return tuple(check_int(name, dilation, minimum=1)
                 for dilation in dilations)
