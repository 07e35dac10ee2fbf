"""U2PL as a configuration of MeanTeacherSegmentor: contrastive loss wiring,
memory bank state, prototype rectifier option, and build-time errors."""
import pytest
import torch
from helpers import (TINY_DLV3P_C1_CHANNELS, TINY_DLV3P_CHANNELS,
                     tiny_deeplabv3plus_cfg, tiny_mean_teacher_cfg,
                     tiny_rep_head_cfg, tiny_u2pl_cfg)
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

import mmseg_semi  # noqa: F401
from mmseg_semi.models.utils.segmentor_forward import valid_pixel_mask

register_all_modules(init_default_scope=True)

NUM_CLASSES = 3
SIZE = 32
REP = 8


def u2pl_cfg(**kwargs):
    return tiny_u2pl_cfg(**kwargs)


def samples(batch, with_gt, img_shape=(SIZE, SIZE)):
    out = []
    for i in range(batch):
        sample = SegDataSample()
        sample.set_metainfo(
            dict(img_shape=img_shape, pad_shape=(SIZE, SIZE)))
        if with_gt:
            gt = torch.full((1, SIZE, SIZE), i % NUM_CLASSES)
            gt[:, :, SIZE // 2:] = (i + 1) % NUM_CLASSES
            sample.gt_sem_seg = PixelData(data=gt)
        out.append(sample)
    return out


def semi_batch(batch=2, unlabeled_img_shape=(SIZE, SIZE)):
    torch.manual_seed(0)
    inputs = dict(
        labeled=torch.randn(batch, 3, SIZE, SIZE),
        weak=torch.randn(batch, 3, SIZE, SIZE),
        strong=torch.randn(batch, 3, SIZE, SIZE))
    data_samples = dict(
        labeled=samples(batch, True),
        weak=samples(batch, False, unlabeled_img_shape),
        strong=samples(batch, False, unlabeled_img_shape))
    return inputs, data_samples


def build(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.train()
    return model


def test_contrastive_loss_reaches_student_only():
    model = build(u2pl_cfg())
    inputs, data_samples = semi_batch()
    losses = model.loss(inputs, data_samples)
    assert set(losses) >= {
        'sup_decode.loss_ce', 'unsup_loss_ce', 'unsup_loss_contrast'
    }
    contrast = losses['unsup_loss_contrast']
    # anchor_prob_threshold=0 and a fresh queue filled by this very step
    # make every class present in the labels valid: the loss is positive.
    assert torch.isfinite(contrast) and contrast > 0
    contrast.backward()
    rep_grads = [p.grad for p in model.student_rep_head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in rep_grads)
    assert any(g.abs().sum() > 0 for g in rep_grads)
    # The representation head sits on the student's decoder feature, so the
    # contrastive gradient flows on into the backbone.
    backbone_grads = [
        p.grad for p in model.student.backbone.parameters()
        if p.grad is not None
    ]
    assert backbone_grads and any(g.abs().sum() > 0 for g in backbone_grads)
    for module in (model.teacher, model.teacher_rep_head):
        assert all(p.grad is None for p in module.parameters())
        assert all(not p.requires_grad for p in module.parameters())


def test_memory_bank_fills_and_is_checkpointed():
    model = build(u2pl_cfg())
    inputs, data_samples = semi_batch()
    model.loss(inputs, data_samples)
    bank = model.contrastive_loss.memory_bank
    assert int(bank.count.sum()) > 0
    state = model.state_dict()
    for name in ('keys', 'ptr', 'count'):
        assert f'contrastive_loss.memory_bank.{name}' in state
    restored = build(u2pl_cfg())
    assert int(restored.contrastive_loss.memory_bank.count.sum()) == 0
    restored.load_state_dict(state)
    assert torch.equal(restored.contrastive_loss.memory_bank.keys, bank.keys)
    assert torch.equal(restored.contrastive_loss.memory_bank.count,
                       bank.count)


def test_teacher_rep_head_is_an_ema_pair_and_stays_eval():
    model = build(u2pl_cfg())
    pairs = model.teacher_student_pairs()
    assert (model.teacher_rep_head, model.student_rep_head) in [
        (t, s) for t, s in pairs
    ]
    model.train()
    assert not model.teacher_rep_head.training
    assert model.student_rep_head.training


def test_warmup_skips_contrastive_and_unsup_losses():
    model = build(u2pl_cfg(unsup_start_iter=5))
    model.set_train_progress(4, 10)
    losses = model.loss(*semi_batch())
    assert not any(key.startswith('unsup_') for key in losses)
    model.set_train_progress(5, 10)
    assert 'unsup_loss_contrast' in model.loss(*semi_batch())


def test_padded_unlabeled_pixels_are_never_negatives():
    """Padding (outside img_shape) is neither reliable nor unreliable, so it
    never reaches the queues as an Eq. 15 negative."""
    model = build(u2pl_cfg(cutmix=None))
    inputs, data_samples = semi_batch(unlabeled_img_shape=(SIZE // 2, SIZE))
    weak = inputs['weak']
    valid = valid_pixel_mask(data_samples['weak'], *weak.shape[2:],
                             weak.device)
    pseudo = model.pairs[0].pseudo_label(weak, valid, model.progress).pseudo
    assert not pseudo.unreliable[:, SIZE // 2:].any()
    assert (pseudo.labels[:, SIZE // 2:] == 255).all()


def test_rep_head_without_contrastive_loss_is_refused():
    cfg = u2pl_cfg()
    cfg.pop('contrastive_loss')
    with pytest.raises(ValueError, match='contrastive_loss'):
        MODELS.build(cfg)


@MODELS.register_module(force=True)
class HeadWithoutClassifier(torch.nn.Module):
    """A decode head that is not an mmseg BaseDecodeHead: no conv_seg."""

    def __init__(self, in_channels, num_classes, **kwargs):
        super().__init__()
        self.align_corners = False
        self.num_classes = num_classes
        self.out_channels = num_classes
        self.proj = torch.nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, feats):
        return self.proj(feats[0])


def test_head_without_classifier_features_is_refused():
    cfg = u2pl_cfg()
    cfg['segmentor']['decode_head'] = dict(
        type='HeadWithoutClassifier', in_channels=64, num_classes=NUM_CLASSES)
    with pytest.raises(AttributeError, match='exposes no decoder features'):
        MODELS.build(cfg)


def test_prototype_rectifier_option_logs_changed_fraction():
    model = build(
        tiny_mean_teacher_cfg(
            rectifier=dict(
                type='PrototypeRectifier',
                num_classes=NUM_CLASSES,
                feat_channels=16,
                momentum=0.5)))
    inputs, data_samples = semi_batch()
    first = model.loss(inputs, data_samples)
    assert 'unsup_rectified_ratio' in first
    # The first batch initialises the prototypes; rectification is the
    # identity before that.
    assert float(first['unsup_rectified_ratio']) == 0.0
    assert bool(model.rectifier.prototype_initialised.any())
    second = model.loss(inputs, data_samples)
    assert 0.0 <= float(second['unsup_rectified_ratio']) <= 1.0


# ------------------------------------- the representation head's source
#: The tiny DeepLabV3+'s fused ASPP + low-level feature (sep_bottleneck's
#: input), what U2PL's representation head reads.
FUSED = TINY_DLV3P_CHANNELS + TINY_DLV3P_C1_CHANNELS


def u2pl_deeplabv3plus_cfg(feature_source=None, **rep_head):
    """Tiny U2PL on DeepLabV3+; ``feature_source`` None is the default
    (the classifier input, channels read from the student)."""
    if feature_source is not None:
        rep_head = dict(dict(feature_source=feature_source,
                             in_channels=FUSED), **rep_head)
    return u2pl_cfg(segmentor=tiny_deeplabv3plus_cfg(),
                    rep_head=tiny_rep_head_cfg(**rep_head))


def grad_sum(module):
    return sum(
        float(p.grad.abs().sum()) for p in module.parameters()
        if p.grad is not None)


@pytest.mark.parametrize('feature_source', ['sep_bottleneck', None])
def test_paper_source_keeps_contrast_off_the_classifier_branch(
        feature_source):
    """Issue "Paper fidelity", U2PL item 3: in U2PL the representation and
    classifier heads are parallel branches on the fused decoder feature, so
    the contrastive loss alone trains ASPP, the low-level branch and the
    backbone but not sep_bottleneck; reading the classifier input (the
    default) trains sep_bottleneck too."""
    model = build(u2pl_deeplabv3plus_cfg(feature_source))
    losses = model.loss(*semi_batch())
    assert losses['unsup_loss_contrast'] > 0
    losses['unsup_loss_contrast'].backward()
    head = model.student.decode_head
    for module in (head.aspp_modules, head.bottleneck, head.c1_bottleneck,
                   model.student.backbone, model.student_rep_head):
        assert grad_sum(module) > 0
    assert all(p.grad is None for p in head.conv_seg.parameters())
    if feature_source == 'sep_bottleneck':
        assert model.student_rep_head.in_channels == FUSED
        assert grad_sum(head.sep_bottleneck) == 0
    else:
        assert model.student_rep_head.in_channels == TINY_DLV3P_CHANNELS
        assert grad_sum(head.sep_bottleneck) > 0


def test_one_forward_per_view_feeds_rectifier_and_rep_head():
    """With a rectifier the teacher's one forward on the weak view gives
    the rectifier the classifier input and the representation head
    sep_bottleneck's input; a loss step runs each network once per view."""
    cfg = u2pl_deeplabv3plus_cfg('sep_bottleneck')
    cfg['rectifier'] = dict(
        type='PrototypeRectifier', num_classes=NUM_CLASSES, momentum=0.5)
    model = build(cfg)
    assert model.rectifier.feat_channels == TINY_DLV3P_CHANNELS
    calls = {'teacher': 0, 'student': 0}
    for name in calls:
        getattr(model, name).decode_head.register_forward_hook(
            lambda *args, name=name: calls.__setitem__(name, calls[name] + 1))
    inputs, data_samples = semi_batch()
    weak = inputs['weak']
    output = model.pairs[0].pseudo_label(
        weak, torch.ones(weak.shape[:1] + weak.shape[2:], dtype=torch.bool),
        model.progress)
    assert calls == {'teacher': 1, 'student': 0}
    assert output.feats.shape[1] == FUSED
    assert bool(model.rectifier.prototype_initialised.any())
    calls.update(teacher=0)
    model.loss(inputs, data_samples)
    # weak + labeled for the teacher, labeled + strong for the student
    assert calls == {'teacher': 2, 'student': 2}


def test_bad_feature_source_is_refused_at_build_time():
    with pytest.raises(ValueError) as error:
        MODELS.build(u2pl_deeplabv3plus_cfg('sep_bottlenek'))
    assert "feature_source='sep_bottlenek'" in str(error.value)
    assert 'DepthwiseSeparableASPPHead' in str(error.value)
    cfg = u2pl_deeplabv3plus_cfg('sep_bottleneck')
    cfg['rep_head'].pop('in_channels')
    with pytest.raises(ValueError, match='give its channels as rep_head '
                       'in_channels'):
        MODELS.build(cfg)
