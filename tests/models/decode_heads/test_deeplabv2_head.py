"""DeepLabV2Head: DeepLabv2's summed atrous classifier as an mmseg head."""
import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import (tiny_labeled_samples, tiny_segmentor_cfg,
                     tiny_semi_inputs)
from mmengine.config import ConfigDict
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from torch import nn

import mmseg_semi  # noqa: F401
from mmseg_semi.engine.hooks.ema_teacher_hook import ema_update_
from mmseg_semi.models.decode_heads import DeepLabV2Head
from mmseg_semi.models.decode_heads.deeplabv2_head import (
    AtrousClassifierSum, atrous_classifier_logits)
from mmseg_semi.models.utils.segmentor_forward import (
    classifier_in_channels, decode_with_features, forward_logits,
    segmentor_loss_with_features)

register_all_modules(init_default_scope=True)

NUM_CLASSES = 3
SIZE = 32
#: Channels of the tiny ResNet's last stage (tests/helpers.py).
FEAT_CHANNELS = 64


def build_head(**kwargs):
    cfg = dict(
        type='DeepLabV2Head',
        in_channels=4,
        num_classes=NUM_CLASSES,
        dropout_ratio=0.0)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def deeplabv2_segmentor_cfg(**head_kwargs):
    """The tiny ResNet of tests/helpers.py with a DeepLabV2Head."""
    cfg = tiny_segmentor_cfg(NUM_CLASSES)
    cfg['decode_head'] = dict(
        type='DeepLabV2Head',
        in_channels=FEAT_CHANNELS,
        in_index=0,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.0,
        num_classes=NUM_CLASSES,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
    cfg['decode_head'].update(head_kwargs)
    return ConfigDict(cfg)


def build_segmentor(**head_kwargs):
    torch.manual_seed(0)
    segmentor = MODELS.build(deeplabv2_segmentor_cfg(**head_kwargs))
    segmentor.init_weights()
    return segmentor


# -------------------------------------------------------------- the head
def test_registered_and_default_dilations():
    head = build_head()
    assert isinstance(head, DeepLabV2Head)
    assert isinstance(head.conv_seg, AtrousClassifierSum)
    assert head.dilations == (6, 12, 18, 24)
    assert [b.dilation for b in head.conv_seg.branches] == [
        (6, 6), (12, 12), (18, 18), (24, 24)]
    # Padding equal to the dilation, 3x3 kernels, one bias per class.
    for branch in head.conv_seg.branches:
        assert branch.padding == branch.dilation
        assert branch.kernel_size == (3, 3)
        assert branch.weight.shape == (NUM_CLASSES, 4, 3, 3)
        assert branch.bias.shape == (NUM_CLASSES, )
    # DeepLabv2 classifies the input feature itself.
    assert head.channels == head.in_channels == 4


def test_output_shape():
    head = build_head(in_channels=8, in_index=1)
    feats = [torch.randn(2, 3, 10, 12), torch.randn(2, 8, 5, 7)]
    assert head(feats).shape == (2, NUM_CLASSES, 5, 7)


def test_logits_by_hand_on_a_small_tensor():
    """Two branches, one non-zero tap each, on x = 0..24 in a 5x5 grid.

    Branch 1 (rate 1) has weight 1 on the centre-right tap, so it reads
    x[i, j + 1]; branch 2 (rate 2) has weight 2 on the top-centre tap, so it
    reads x[i - 2, j]; zero padding outside. Biases 0.5 and -1.
    """
    head = build_head(
        in_channels=1, num_classes=1, threshold=0.5, dilations=(1, 2))
    rate1, rate2 = head.conv_seg.branches
    with torch.no_grad():
        for branch in (rate1, rate2):
            branch.weight.zero_()
        rate1.weight[0, 0, 1, 2] = 1.0
        rate1.bias.fill_(0.5)
        rate2.weight[0, 0, 0, 1] = 2.0
        rate2.bias.fill_(-1.0)
    x = torch.arange(25.0).view(1, 1, 5, 5)
    logits = head([x])[0, 0]
    # A few values worked out on paper: (0, 0): x[0, 1] + 0.5 - 1 = 0.5;
    # (2, 4): 0 + 2 * x[0, 4] - 0.5 = 7.5; (4, 3): x[4, 4] + 2 * x[2, 3]
    # - 0.5 = 24 + 26 - 0.5 = 49.5.
    assert logits[0, 0].item() == 0.5
    assert logits[2, 4].item() == 7.5
    assert logits[4, 3].item() == 49.5
    expected = torch.empty(5, 5)
    for i in range(5):
        for j in range(5):
            right = x[0, 0, i, j + 1].item() if j + 1 < 5 else 0.0
            up2 = x[0, 0, i - 2, j].item() if i - 2 >= 0 else 0.0
            expected[i, j] = right + 0.5 + 2.0 * up2 - 1.0
    assert torch.equal(logits, expected)


def test_logits_are_the_sum_of_the_four_branch_convs():
    torch.manual_seed(0)
    head = build_head(in_channels=4)
    head.init_weights()
    x = torch.randn(2, 4, 9, 11)
    expected = sum(
        F.conv2d(x, branch.weight, branch.bias, padding=rate, dilation=rate)
        for branch, rate in zip(head.conv_seg.branches, (6, 12, 18, 24)))
    assert torch.allclose(head([x]), expected, atol=1e-6)
    # The pure function gives the same.
    assert torch.allclose(
        atrous_classifier_logits(x, head.conv_seg.branches), expected,
        atol=1e-6)


@pytest.mark.parametrize('size', [(1, 1), (3, 50), (33, 17)])
def test_dilations_keep_the_resolution(size):
    # Rates larger than the map still give one score per position.
    head = build_head()
    assert head([torch.randn(1, 4, *size)]).shape == (1, NUM_CLASSES, *size)


def test_gradients_reach_every_branch():
    head = build_head()
    head([torch.randn(2, 4, 6, 6)]).sum().backward()
    for branch in head.conv_seg.branches:
        assert branch.weight.grad.abs().sum() > 0
        assert branch.bias.grad.abs().sum() > 0


def test_init_weights_normal_std_0_01_and_zero_bias():
    torch.manual_seed(0)
    head = build_head(in_channels=64, num_classes=5)
    head.init_weights()
    for branch in head.conv_seg.branches:
        assert 0.008 < branch.weight.std().item() < 0.012
        assert abs(branch.weight.mean().item()) < 0.001
        assert torch.equal(branch.bias, torch.zeros(5))


def test_resize_concat_input():
    head = build_head(
        in_channels=[4, 6], in_index=[0, 1], input_transform='resize_concat')
    assert head.conv_seg.in_channels == 10
    feats = [torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)]
    assert head(feats).shape == (1, NUM_CLASSES, 8, 8)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r'channels=32 .*\(in_channels=4\)'):
        build_head(channels=32)
    with pytest.raises(ValueError, match=r'dilations .* got \(\)'):
        build_head(dilations=())
    with pytest.raises(ValueError, match=r'dilations=\(6, 0\) .* got 0'):
        build_head(dilations=(6, 0))
    with pytest.raises(ValueError, match="'multiple_select'"):
        build_head(
            in_channels=[4, 6],
            in_index=[0, 1],
            input_transform='multiple_select')


# --------------------------------------- features for rectifier and U2PL
def test_captured_features_are_the_backbone_feature():
    segmentor = build_segmentor()
    segmentor.eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        backbone_feature = segmentor.extract_feat(images)[0]
        logits, features = forward_logits(
            segmentor, images, with_features=True)
    assert features.shape == (2, FEAT_CHANNELS, SIZE // 8, SIZE // 8)
    assert torch.equal(features, backbone_feature)
    assert logits.shape == (2, NUM_CLASSES, SIZE, SIZE)
    assert classifier_in_channels(segmentor.decode_head) == FEAT_CHANNELS


def test_features_are_captured_before_the_student_dropout():
    """RML's dropout sits between the feature and the classifier: the
    captured feature is the clean one, the logits see the dropout."""
    segmentor = build_segmentor(dropout_ratio=0.5)
    head = segmentor.decode_head
    head.train()
    feature = torch.randn(2, FEAT_CHANNELS, 4, 4)
    torch.manual_seed(1)
    logits, captured = decode_with_features(head, [feature])
    assert torch.equal(captured, feature)
    clean = head.conv_seg(feature)
    assert not torch.allclose(logits, clean)
    head.eval()
    logits, captured = decode_with_features(head, [feature])
    assert torch.equal(captured, feature)
    assert torch.equal(logits, clean)


def test_segmentor_loss_with_features_for_u2pl():
    segmentor = build_segmentor()
    segmentor.train()
    images = torch.randn(2, 3, SIZE, SIZE)
    losses, seg_logits, features = segmentor_loss_with_features(
        segmentor, images, labeled_samples(2))
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg'}
    assert torch.isfinite(losses['decode.loss_ce'])
    assert seg_logits.shape == (2, NUM_CLASSES, SIZE // 8, SIZE // 8)
    assert features.shape == (2, FEAT_CHANNELS, SIZE // 8, SIZE // 8)


def test_classifier_in_channels_needs_an_int_in_channels():
    head = build_head()
    assert classifier_in_channels(head) == 4
    head.conv_seg = nn.Identity()
    with pytest.raises(TypeError, match='DeepLabV2Head has no conv_seg'):
        classifier_in_channels(head)


# ---------------------------------------------------- inside RML's model
def labeled_samples(batch, seed=0):
    return tiny_labeled_samples(batch, seed, SIZE, NUM_CLASSES)


def semi_batch(batch=2, seed=0):
    return tiny_semi_inputs(batch, seed, SIZE)


def test_two_rml_training_steps_with_deeplabv2_students():
    segmentor = deeplabv2_segmentor_cfg()
    torch.manual_seed(0)
    model = MODELS.build(
        ConfigDict(
            type='DualStudentSegmentor',
            segmentor1=copy.deepcopy(segmentor),
            segmentor2=copy.deepcopy(segmentor),
            student1_noise=dict(dropout=0.5, drop_path=0.2),
            student2_noise=dict(dropout=0.3, drop_path=0.1),
            rectifier=dict(type='PrototypeRectifier', momentum=0.5),
            cutmix=dict(prob=1.0)))
    model.init_weights()
    # Rectifiers live in the 64-d backbone feature space.
    for rectifier in (model.rectifier1, model.rectifier2):
        assert rectifier.feat_channels == FEAT_CHANNELS
        assert rectifier.prototypes.shape == (NUM_CLASSES, FEAT_CHANNELS)
    assert model.student1.decode_head.dropout.p == 0.5
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    student_before = copy.deepcopy(model.student1.state_dict())
    teacher_before = copy.deepcopy(model.teacher1.state_dict())
    for step in range(2):
        model.set_train_progress(step, 2)
        optimizer.zero_grad()
        losses = model.loss(*semi_batch(seed=step))
        assert {
            'sup1_decode.loss_ce', 'sup2_decode.loss_ce',
            'unsup1_own_loss_ce', 'unsup1_peer_loss_ce',
            'unsup2_own_loss_ce', 'unsup2_peer_loss_ce'
        } <= set(losses)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        assert torch.isfinite(total)
        total.backward()
        for student in (model.student1, model.student2):
            for branch in student.decode_head.conv_seg.branches:
                assert branch.weight.grad.abs().sum() > 0
        for teacher in model.teachers():
            assert all(p.grad is None for p in teacher.parameters())
        optimizer.step()
        for teacher, student in model.teacher_student_pairs():
            ema_update_(teacher, student, decay=0.5)
        assert 0.0 <= losses['unsup_teacher_agreement'].item() <= 1.0
    for rectifier in (model.rectifier1, model.rectifier2):
        assert rectifier.prototype_initialised.any()
    branch = 'decode_head.conv_seg.branches.3.weight'
    assert not torch.equal(model.student1.state_dict()[branch],
                           student_before[branch])
    assert not torch.equal(model.teacher1.state_dict()[branch],
                           teacher_before[branch])
    model.eval()
    model.predict_on = 'ensemble'
    results = model.predict(torch.randn(1, 3, SIZE, SIZE), labeled_samples(1))
    assert results[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)
