"""U2PL's representation head (Sec. 3.3): Conv-BN-ReLU blocks and a linear
projection to the contrastive feature space."""
import pytest
import torch
from mmseg.registry import MODELS

from mmseg_semi.models.decode_heads import RepresentationHead


def test_representation_head_structure_and_shape():
    head = RepresentationHead(in_channels=6, channels=16)
    convs = [m for m in head.convs if hasattr(m, 'conv')]
    assert len(convs) == 2
    assert [c.conv.kernel_size for c in convs] == [(3, 3), (3, 3)]
    assert [c.conv.in_channels for c in convs] == [6, 16]
    assert all(isinstance(c.bn, torch.nn.BatchNorm2d) for c in convs)
    assert sum(isinstance(m, torch.nn.Dropout2d) for m in head.convs) == 2
    assert head.projection.kernel_size == (1, 1)
    feats = torch.randn(2, 6, 5, 7, requires_grad=True)
    out = head(feats)
    assert out.shape == (2, 16, 5, 7)
    # The linear projection lets representations take negative values.
    assert (out < 0).any()
    out.sum().backward()
    assert feats.grad is not None and head.projection.weight.grad is not None


def test_representation_head_options_and_registry():
    head = MODELS.build(
        dict(type='RepresentationHead', in_channels=4, channels=8,
             num_convs=1, dropout_ratio=0.0,
             norm_cfg=dict(type='SyncBN', requires_grad=True)))
    assert isinstance(head, RepresentationHead)
    assert len(head.convs) == 1
    assert isinstance(head.convs[0].bn, torch.nn.SyncBatchNorm)
    with pytest.raises(ValueError, match='feats'):
        RepresentationHead(in_channels=4)(torch.randn(1, 5, 2, 2))
    with pytest.raises(ValueError, match='num_convs'):
        RepresentationHead(in_channels=4, num_convs=0)
