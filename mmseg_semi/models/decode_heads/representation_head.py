"""Representation head for U2PL's contrastive loss (Sec. 3.3, 4.1)."""
from typing import Optional

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...utils.arg_checks import check_int, check_number


@MODELS.register_module()
class RepresentationHead(BaseModule):
    """Map decoder features to the pixel representations ``z`` of Eq. 4.

    Structure: ``num_convs`` Conv3x3-Norm-ReLU blocks (each followed by
    Dropout2d), then a linear Conv1x1 projection to ``channels``. U2PL
    (Sec. 4.1) describes the head as two Conv-BN-ReLU blocks producing
    256-d representations; the authors' released code ends with the
    additional linear 1x1 convolution, which this head keeps: without it
    every coordinate would pass a ReLU, all representations would lie in
    the positive orthant and no cosine similarity could be negative. The
    defaults (``num_convs=2``, ``dropout_ratio=0.1``) reproduce that code;
    ``num_convs=1`` gives the lighter Conv3x3-BN-ReLU + Conv1x1 variant.
    The spatial size is preserved.

    The segmentors run it on the input of the decode head's classifier
    ``conv_seg`` (``in_channels`` is then that head's ``channels``), or,
    with the ``rep_head`` key ``feature_source``, on another decode-head
    module's input: U2PL's decoder feeds its fused ASPP and low-level
    feature to the classifier and this head in parallel, which in mmseg's
    DeepLabV3+ is the input of ``sep_bottleneck``.

    Args:
        in_channels: Channels of the input features.
        channels: Representation dimension D (256 in U2PL).
        num_convs: Number of Conv3x3-Norm-ReLU blocks (>= 1).
        dropout_ratio: Dropout2d probability after each block (0 disables).
        conv_cfg: mmcv conv config.
        norm_cfg: mmcv norm config; use ``dict(type='SyncBN')`` for
            multi-GPU training.
        act_cfg: mmcv activation config.
        init_cfg: mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 256,
                 num_convs: int = 2,
                 dropout_ratio: float = 0.1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN',
                                                 requires_grad=True),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels),
                            ('channels', channels),
                            ('num_convs', num_convs)):
            check_int(name, value, minimum=1)
        check_number('dropout_ratio', dropout_ratio, 0, 1, high_open=True)
        self.in_channels = in_channels
        self.channels = channels
        layers = []
        for index in range(num_convs):
            layers.append(
                ConvModule(
                    in_channels if index == 0 else channels,
                    channels,
                    kernel_size=3,
                    padding=1,
                    conv_cfg=conv_cfg,
                    norm_cfg=norm_cfg,
                    act_cfg=act_cfg))
            if dropout_ratio > 0:
                layers.append(nn.Dropout2d(dropout_ratio))
        self.convs = nn.Sequential(*layers)
        self.projection = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, feats: Tensor) -> Tensor:
        """(B, in_channels, h, w) -> (B, channels, h, w) representations."""
        if feats.dim() != 4 or feats.shape[1] != self.in_channels:
            raise ValueError(
                f'feats must have shape (B, {self.in_channels}, h, w), got '
                f'{tuple(feats.shape)}')
        return self.projection(self.convs(feats))
