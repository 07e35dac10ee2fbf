"""RML student model noise: classifier dropout and stochastic depth."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmseg.models.backbones.resnet import BasicBlock
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from torch import nn

from mmseg_semi.models.utils.model_noise import (ResidualBranchDrop,
                                                 add_classifier_dropout,
                                                 add_stochastic_depth,
                                                 apply_model_noise,
                                                 stochastic_depth_drop_probs)

register_all_modules(init_default_scope=False)


def tiny_backbone(**kwargs):
    """ResNetV1c-18 with 8 base channels: 8 BasicBlocks in 4 stages."""
    return MODELS.build(
        dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=8,
            base_channels=8,
            out_indices=(2, 3),
            **kwargs))


def tiny_segmentor():
    head = dict(
        type='FCNHead',
        num_convs=1,
        concat_input=False,
        channels=16,
        num_classes=3,
        norm_cfg=dict(type='BN'))
    return MODELS.build(
        dict(
            type='EncoderDecoder',
            backbone=dict(
                type='ResNetV1c',
                depth=18,
                stem_channels=8,
                base_channels=8,
                out_indices=(2, 3)),
            decode_head=dict(head, in_channels=64, in_index=1),
            auxiliary_head=dict(head, in_channels=32, in_index=0)))


def blocks_of(backbone):
    return [
        block for name in backbone.res_layers
        for block in getattr(backbone, name)
    ]


def residual_branch(block, x):
    """conv1-norm1-relu-conv2-norm2 of a BasicBlock, without the hook."""
    hook = block.residual_branch_drop
    saved, hook.drop_prob = hook.drop_prob, 0.0
    out = block.norm2(block.conv2(block.relu(block.norm1(block.conv1(x)))))
    hook.drop_prob = saved
    return out


# --------------------------------------------------------------------------
# Classifier dropout
# --------------------------------------------------------------------------


def test_classifier_dropout_replaces_every_head_dropout():
    segmentor = tiny_segmentor()
    keys = list(segmentor.state_dict())
    add_classifier_dropout(segmentor, p=0.5)
    for head in (segmentor.decode_head, segmentor.auxiliary_head):
        assert isinstance(head.dropout, nn.Dropout2d)
        assert head.dropout.p == 0.5
    assert list(segmentor.state_dict()) == keys


def test_classifier_dropout_is_active_in_train_only():
    segmentor = tiny_segmentor()
    add_classifier_dropout(segmentor, p=0.5)
    head = segmentor.decode_head
    feat = torch.ones(4, 16, 2, 2)
    torch.manual_seed(0)
    head.train()
    first, second = head.cls_seg(feat), head.cls_seg(feat)
    assert not torch.equal(first, second)
    # Dropout2d(0.5) zeroes whole channels and scales the others by 2.
    dropped = head.dropout(feat)
    assert set(dropped.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(dropped, dropped[:, :, :1, :1].expand_as(dropped))
    head.eval()
    assert torch.equal(head.cls_seg(feat), head.cls_seg(feat))
    assert torch.equal(head.cls_seg(feat), head.conv_seg(feat))


def test_classifier_dropout_zero_removes_dropout_and_can_skip_auxiliary():
    segmentor = tiny_segmentor()
    add_classifier_dropout(segmentor, p=0.0, include_auxiliary=False)
    assert segmentor.decode_head.dropout is None
    # mmseg's default 0.1 dropout is left on the auxiliary head.
    assert segmentor.auxiliary_head.dropout.p == 0.1
    segmentor.decode_head.train()
    feat = torch.rand(2, 16, 2, 2)
    assert torch.equal(
        segmentor.decode_head.cls_seg(feat),
        segmentor.decode_head.conv_seg(feat))


def test_classifier_dropout_rejects_bad_input():
    with pytest.raises(ValueError, match='p must be a number in'):
        add_classifier_dropout(tiny_segmentor(), p=1.5)
    with pytest.raises(TypeError, match='Sequential has no decode_head'):
        add_classifier_dropout(nn.Sequential())
    not_a_head = nn.Module()
    not_a_head.decode_head = nn.Conv2d(1, 1, 1)
    with pytest.raises(TypeError, match='got Conv2d'):
        add_classifier_dropout(not_a_head)


# --------------------------------------------------------------------------
# Stochastic depth
# --------------------------------------------------------------------------


def test_drop_prob_schedules():
    assert stochastic_depth_drop_probs(4, 0.2) == pytest.approx(
        [0.05, 0.1, 0.15, 0.2])
    assert stochastic_depth_drop_probs(3, 0.2, 'uniform') == [0.2] * 3
    with pytest.raises(ValueError, match='schedule'):
        stochastic_depth_drop_probs(3, 0.2, 'cosine')
    with pytest.raises(ValueError, match='drop_prob'):
        stochastic_depth_drop_probs(3, -0.1)


def test_stochastic_depth_linear_schedule_on_resnet18():
    backbone = tiny_backbone()
    drop_probs = add_stochastic_depth(backbone, drop_prob=0.2)
    assert drop_probs == pytest.approx([0.025 * i for i in range(1, 9)])
    hooks = [block.residual_branch_drop for block in blocks_of(backbone)]
    assert all(isinstance(hook, ResidualBranchDrop) for hook in hooks)
    assert [hook.drop_prob for hook in hooks] == drop_probs
    # The hook sits on the norm that ends the residual branch.
    assert all(block.norm2._forward_hooks for block in blocks_of(backbone))


def test_stochastic_depth_keeps_state_dict_and_eval_output():
    backbone = tiny_backbone()
    reference = copy.deepcopy(backbone)
    keys = list(backbone.state_dict())
    add_stochastic_depth(backbone, drop_prob=0.5, schedule='uniform')
    assert list(backbone.state_dict()) == keys
    backbone.eval()
    reference.eval()
    x = torch.rand(2, 3, 16, 16)
    for out, expected in zip(backbone(x), reference(x)):
        assert torch.equal(out, expected)


def test_stochastic_depth_varies_with_seed_in_train():
    backbone = tiny_backbone()
    add_stochastic_depth(backbone, drop_prob=0.5, schedule='uniform')
    backbone.train()
    x = torch.rand(2, 3, 16, 16)
    torch.manual_seed(0)
    first = backbone(x)[-1]
    torch.manual_seed(1)
    second = backbone(x)[-1]
    torch.manual_seed(0)
    repeat = backbone(x)[-1]
    assert not torch.equal(first, second)
    assert torch.equal(first, repeat)


def test_stochastic_depth_drops_or_rescales_each_sample():
    backbone = tiny_backbone()
    add_stochastic_depth(backbone, drop_prob=0.5, schedule='uniform')
    block = blocks_of(backbone)[0]  # 8 -> 8 channels, no downsample
    block.train()
    x = torch.randn(16, 8, 4, 4)
    residual = residual_branch(block, x)
    torch.manual_seed(0)
    out = block(x)
    dropped = F.relu(x)
    kept = F.relu(x + 2.0 * residual)  # inverted scaling 1 / (1 - 0.5)
    is_dropped = [torch.allclose(o, d) for o, d in zip(out, dropped)]
    is_kept = [torch.allclose(o, k) for o, k in zip(out, kept)]
    assert all(d != k for d, k in zip(is_dropped, is_kept))
    # With 16 samples both outcomes occur (probability 1 - 2 / 2**16).
    assert any(is_dropped) and any(is_kept)


def test_drop_prob_one_reduces_blocks_to_their_shortcut():
    backbone = tiny_backbone()
    add_stochastic_depth(backbone, drop_prob=1.0, schedule='uniform')
    backbone.train()
    plain, downsampling = blocks_of(backbone)[0], blocks_of(backbone)[2]
    assert isinstance(downsampling, BasicBlock)
    assert downsampling.downsample is not None
    x = torch.randn(2, 8, 8, 8)
    assert torch.equal(plain(x), F.relu(x))
    assert torch.allclose(downsampling(x), F.relu(downsampling.downsample(x)))
    # No gradient reaches the dropped branch's weights.
    plain.zero_grad()
    plain(x.requires_grad_()).sum().backward()
    assert torch.equal(plain.conv1.weight.grad,
                       torch.zeros_like(plain.conv1.weight))
    assert torch.equal(x.grad, (x > 0).float())


def test_stochastic_depth_active_with_norm_eval():
    backbone = tiny_backbone(norm_eval=True)
    add_stochastic_depth(backbone, drop_prob=1.0, schedule='uniform')
    backbone.train()
    block = blocks_of(backbone)[0]
    assert not block.norm1.training  # norm_eval froze the BN layers
    x = torch.randn(2, 8, 8, 8)
    assert torch.equal(block(x), F.relu(x))


def test_stochastic_depth_second_call_reconfigures():
    backbone = tiny_backbone()
    add_stochastic_depth(backbone, drop_prob=0.2)
    add_stochastic_depth(backbone, drop_prob=0.4, schedule='uniform')
    for block in blocks_of(backbone):
        assert len(block.norm2._forward_hooks) == 1
        assert block.residual_branch_drop.drop_prob == 0.4


def test_stochastic_depth_rejects_unknown_backbone():
    with pytest.raises(TypeError, match='got MobileNetV2'):
        add_stochastic_depth(
            MODELS.build(dict(type='MobileNetV2', widen_factor=0.25)))
    with pytest.raises(TypeError, match='got Conv2d'):
        add_stochastic_depth(nn.Conv2d(3, 3, 1))


# --------------------------------------------------------------------------
# apply_model_noise
# --------------------------------------------------------------------------


def test_apply_model_noise_configures_segmentor():
    segmentor = tiny_segmentor()
    keys = list(segmentor.state_dict())
    assert apply_model_noise(segmentor) is segmentor
    assert segmentor.decode_head.dropout.p == 0.5
    assert segmentor.auxiliary_head.dropout.p == 0.5
    drop_probs = [
        block.residual_branch_drop.drop_prob
        for block in blocks_of(segmentor.backbone)
    ]
    assert drop_probs == pytest.approx([0.025 * i for i in range(1, 9)])
    assert list(segmentor.state_dict()) == keys
    # The whole segmentor still trains end to end.
    segmentor.train()
    logits = segmentor(torch.rand(2, 3, 16, 16), mode='tensor')
    logits.sum().backward()
    assert segmentor.backbone.stem[0].weight.grad is not None


def test_apply_model_noise_without_drop_path_leaves_backbone():
    segmentor = tiny_segmentor()
    segmentor.backbone = nn.Identity()  # e.g. a backbone with drop_path_rate
    apply_model_noise(segmentor, dropout=0.5, drop_path=0.0)
    assert segmentor.decode_head.dropout.p == 0.5
    with pytest.raises(TypeError, match='got Identity'):
        apply_model_noise(segmentor, dropout=0.5, drop_path=0.2)
