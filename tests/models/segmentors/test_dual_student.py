"""RML's DualStudentSegmentor, its teacher-agreement logging and configs."""
import copy
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import (CONFIG_DIR, REPO_ROOT, camvid_root, seg_preprocessor,
                     tiny_labeled_samples, tiny_segmentor_cfg)
from mmengine.config import Config, ConfigDict
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import mmseg_semi  # noqa: F401
from mmseg_semi.utils.checkpoint_loading import stage2_state_dict
from mmseg_semi.models.utils.segmentor_forward import forward_logits
from mmseg_semi.models.utils import pseudo_label_cross_entropy
from mmseg_semi.models.utils.teacher_agreement import (
    argmax_agreement, mean_probability_logits, total_variation_distance)
from mmseg_semi.utils import adapt_config_to_device

# Models resolve their data preprocessors in the default (mmseg) scope.
register_all_modules(init_default_scope=True)

NUM_CLASSES = 3
SIZE = 32
RML_CONFIG_DIR = osp.join(CONFIG_DIR, 'rml')
RML_CAMVID_CONFIG = osp.join(
    RML_CONFIG_DIR, 'rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-'
    '256x320.py')


# ----------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True, scope='module')
def single_thread():
    """Run these tiny models on one thread: on a busy machine the intra-op
    threads of a second core cost far more than they save (seconds per
    test instead of a fraction)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def efficientnet_student_cfg(drop_path_rate=0.0):
    """DeepLabV3+ on a randomly initialised EfficientNet-Lite0 with a
    16-channel ASPP, as in the CamVid configs but small."""
    norm_cfg = dict(type='BN', requires_grad=True)
    return dict(
        type='EncoderDecoder',
        data_preprocessor=seg_preprocessor(),
        backbone=dict(
            type='EfficientNetLite',
            arch='lite0',
            out_indices=(1, 6),
            output_stride=16,
            norm_cfg=norm_cfg,
            drop_path_rate=drop_path_rate,
            init_cfg=None),
        decode_head=dict(
            type='DepthwiseSeparableASPPHead',
            in_channels=320,
            in_index=1,
            channels=16,
            dilations=(1, 2),
            c1_in_channels=24,
            c1_channels=8,
            dropout_ratio=0.0,
            num_classes=NUM_CLASSES,
            norm_cfg=norm_cfg,
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def tiny_segformer_cfg(num_classes=NUM_CLASSES):
    """A one-layer-per-stage MiT with 8-dim embeddings and a SegFormer
    head."""
    return dict(
        type='EncoderDecoder',
        data_preprocessor=seg_preprocessor(),
        backbone=dict(
            type='MixVisionTransformer',
            embed_dims=8,
            num_stages=4,
            num_layers=[1, 1, 1, 1],
            num_heads=[1, 2, 5, 8],
            patch_sizes=[7, 3, 3, 3],
            sr_ratios=[8, 4, 2, 1],
            out_indices=(0, 1, 2, 3),
            drop_path_rate=0.2),
        decode_head=dict(
            type='SegformerHead',
            in_channels=[8, 16, 40, 64],
            in_index=[0, 1, 2, 3],
            channels=16,
            dropout_ratio=0.0,
            num_classes=num_classes,
            norm_cfg=dict(type='BN', requires_grad=True),
            align_corners=False,
            loss_decode=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))


def build_model(**kwargs):
    cfg = dict(
        type='DualStudentSegmentor',
        segmentor1=tiny_segmentor_cfg(),
        student1_noise=None,
        student2_noise=None,
        rectifier=dict(type='PrototypeRectifier', momentum=0.5),
        # The paper's raw softmax, so expected labels can be written from
        # the teachers' outputs (tests/models/pseudo_labelers/
        # test_class_balance.py covers the alignment).
        class_balance=None,
        cutmix=None)
    cfg.update(kwargs)
    torch.manual_seed(0)
    # ConfigDict: mmseg reads test_cfg.mode as an attribute.
    model = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    model.init_weights()
    return model


def data_samples(batch, size=SIZE, seed=0):
    return tiny_labeled_samples(batch, seed, size, NUM_CLASSES)


def semi_batch(batch=2, seed=0):
    """Preprocessed ``(inputs, data_samples)`` as the loss receives them."""
    generator = torch.Generator().manual_seed(seed)

    def images():
        return torch.randn(batch, 3, SIZE, SIZE, generator=generator)

    inputs = dict(labeled=images(), weak=images())
    # The strong view is a photometric change of the weak one.
    inputs['strong'] = inputs['weak'] * 0.8 + 0.1
    samples = {
        view: data_samples(batch, seed=seed + offset)
        for offset, view in enumerate(('labeled', 'weak', 'strong'))
    }
    return inputs, samples


def total(losses, prefixes=('',)):
    """Sum of the loss terms whose key starts with one of ``prefixes``."""
    return sum(
        value for key, value in losses.items()
        if 'loss' in key and key.startswith(tuple(prefixes)))


def force_class(segmentor, cls, margin=50.0):
    """Make ``segmentor`` predict ``cls`` everywhere (classifier bias)."""
    with torch.no_grad():
        bias = segmentor.decode_head.conv_seg.bias
        bias.zero_()
        bias[cls] = margin


def unsup_losses(model, inputs, samples):
    return {
        key: value.item()
        for key, value in model.loss(inputs, samples).items()
        if key.startswith('unsup') and 'loss' in key
    }


# ------------------------------------------------------ teacher agreement
def test_argmax_agreement_by_hand():
    # Pixel arg-maxes: teacher 1 (0, 1, 1, 0), teacher 2 (0, 0, 1, 1).
    probs1 = torch.tensor([[0.9, 0.2, 0.4, 0.6],
                           [0.1, 0.8, 0.6, 0.4]]).view(1, 2, 1, 4)
    probs2 = torch.tensor([[0.7, 0.6, 0.1, 0.3],
                           [0.3, 0.4, 0.9, 0.7]]).view(1, 2, 1, 4)
    assert argmax_agreement(probs1, probs2).item() == pytest.approx(0.5)
    valid = torch.tensor([[[True, False, True, False]]])
    assert argmax_agreement(probs1, probs2, valid).item() == 1.0
    valid = torch.tensor([[[False, True, False, True]]])
    assert argmax_agreement(probs1, probs2, valid).item() == 0.0
    nothing = torch.zeros(1, 1, 4, dtype=torch.bool)
    assert argmax_agreement(probs1, probs2, nothing).item() == 0.0


def test_total_variation_distance_by_hand():
    # Per pixel 0.5 * sum |p1 - p2|: 0.5 * (0.5 + 0.5) = 0.5, then
    # 0.5 * (0.1 + 0.3 + 0.2) = 0.3, then identical: 0.
    probs1 = torch.tensor([[0.7, 0.5, 0.2], [0.3, 0.2, 0.3],
                           [0.0, 0.3, 0.5]]).view(1, 3, 1, 3)
    probs2 = torch.tensor([[0.2, 0.6, 0.2], [0.8, 0.5, 0.3],
                           [0.0, 0.1, 0.5]]).view(1, 3, 1, 3)
    assert total_variation_distance(probs1, probs2).item() == \
        pytest.approx((0.5 + 0.3 + 0.0) / 3)
    valid = torch.tensor([[[True, True, False]]])
    assert total_variation_distance(probs1, probs2, valid).item() == \
        pytest.approx(0.4)
    # Disjoint supports are at distance 1.
    onehot1 = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert total_variation_distance(onehot1, onehot1.flip(1)).item() == 1.0


def test_mean_probability_logits_is_the_average():
    probs1 = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    probs2 = torch.tensor([0.0, 0.5, 0.5]).view(1, 3, 1, 1)
    logits = mean_probability_logits([probs1, probs2])
    assert torch.isfinite(logits).all()
    assert torch.allclose(
        logits.softmax(dim=1).flatten(), torch.tensor([0.5, 0.25, 0.25]))
    zeros = torch.zeros(1, 2, 1, 1)
    assert torch.isfinite(mean_probability_logits([zeros, zeros])).all()


def test_agreement_functions_reject_bad_shapes():
    with pytest.raises(ValueError, match=r'\(1, 2, 1, 1\) and \(1, 3, 1, 1\)'):
        total_variation_distance(
            torch.ones(1, 2, 1, 1), torch.ones(1, 3, 1, 1))
    with pytest.raises(ValueError, match='valid'):
        argmax_agreement(
            torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2),
            torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match='at least one'):
        mean_probability_logits([])


# -------------------------------------------------------------- building
def test_different_num_classes_raise_naming_both():
    with pytest.raises(ValueError,
                       match='num_classes=3.*num_classes=4'):
        build_model(segmentor2=tiny_segmentor_cfg(num_classes=4))


def test_rectifier_sizes_come_from_each_teacher():
    model = build_model(segmentor2=tiny_segformer_cfg())
    assert model.rectifier1.feat_channels == 16  # FCN head channels
    assert model.rectifier2.feat_channels == 16  # SegFormer head channels
    assert model.rectifier1.num_classes == NUM_CLASSES
    with pytest.raises(ValueError, match='num_classes=5'):
        build_model(rectifier=dict(type='PrototypeRectifier', num_classes=5))


def test_students_with_different_normalisation_raise():
    other = tiny_segmentor_cfg()
    other['data_preprocessor']['std'] = [58.0] * 3
    with pytest.raises(ValueError, match='segmentor2.data_preprocessor.std'):
        build_model(segmentor2=other)


def test_negative_loss_weight_raises_naming_it():
    with pytest.raises(ValueError, match='unsup2_peer_weight.*-1'):
        build_model(unsup2_peer_weight=-1.0)


def test_stage2_init_must_name_a_checkpoint():
    with pytest.raises(ValueError, match='stage2_init'):
        build_model(stage2_init=dict(path='x.pth'))


def test_predict_on_is_validated():
    with pytest.raises(ValueError, match="'teacher'"):
        build_model(predict_on='teacher')
    model = build_model()
    assert model.predict_choices() == [
        'teacher1', 'student1', 'teacher2', 'student2', 'ensemble'
    ]


def test_init_weights_makes_teachers_equal_their_students():
    model = build_model()
    for teacher, student in model.teacher_student_pairs():
        for (name, t_value), s_value in zip(
                teacher.state_dict().items(), student.state_dict().values()):
            assert torch.equal(t_value, s_value), name
    # The two students are independently initialised.
    assert not torch.equal(model.student1.decode_head.conv_seg.weight,
                           model.student2.decode_head.conv_seg.weight)


# ----------------------------------------------------------------- noise
def assert_noise_in_train_only(model, backbone_output):
    """Students: two training passes differ, eval passes agree; teachers
    are deterministic even while the wrapper is in training mode."""
    x = torch.randn(2, 3, SIZE, SIZE)
    model.train()
    assert model.student1.training and model.student2.training
    for teacher in model.teachers():
        assert not any(m.training for m in teacher.modules())
    torch.manual_seed(1)
    # BN uses batch statistics in training, which are deterministic; only
    # stochastic depth makes two passes of the backbone differ.
    assert not torch.equal(
        backbone_output(model.student1, x), backbone_output(model.student1, x))
    # Student 2 has classifier dropout only.
    assert torch.equal(
        backbone_output(model.student2, x), backbone_output(model.student2, x))
    assert not torch.equal(
        forward_logits(model.student2, x)[0],
        forward_logits(model.student2, x)[0])
    for teacher in model.teachers():
        assert torch.equal(
            backbone_output(teacher, x), backbone_output(teacher, x))
        assert torch.equal(
            forward_logits(teacher, x)[0],
            forward_logits(teacher, x)[0])
    model.eval()
    for student in (model.student1, model.student2):
        assert torch.equal(
            forward_logits(student, x)[0],
            forward_logits(student, x)[0])


def test_resnet_student_noise_from_apply_model_noise():
    segmentor = tiny_segmentor_cfg()
    # mmseg zero-initialises each block's last BN: the residual branches
    # would be exactly 0 and dropping them would change nothing.
    segmentor['backbone']['zero_init_residual'] = False
    model = build_model(
        segmentor1=segmentor,
        student1_noise=dict(dropout=0.5, drop_path=0.5),
        student2_noise=dict(dropout=0.3, drop_path=0.0))
    assert model.student1.decode_head.dropout.p == 0.5
    assert model.student2.decode_head.dropout.p == 0.3
    # The teachers are copies of the noisy students: same modules, inert.
    assert model.teacher1.decode_head.dropout.p == 0.5
    assert_noise_in_train_only(model, lambda net, x: net.backbone(x)[-1])


def test_efficientnet_student_noise_from_drop_path_rate():
    model = build_model(
        segmentor1=efficientnet_student_cfg(drop_path_rate=0.5),
        segmentor2=efficientnet_student_cfg(drop_path_rate=0.0),
        student1_noise=dict(dropout=0.5, drop_path=0.0),
        student2_noise=dict(dropout=0.5, drop_path=0.0))
    assert model.teacher1.backbone.drop_path_rate == 0.5
    assert_noise_in_train_only(model, lambda net, x: net.backbone(x)[-1])


# ---------------------------------------------------------------- losses
def test_loss_keys_and_logged_statistics():
    model = build_model()
    inputs, samples = semi_batch()
    model.train()
    model.set_train_progress(0, 10)
    losses = model.loss(inputs, samples)
    for index in (1, 2):
        assert f'sup{index}_decode.loss_ce' in losses
        assert f'unsup{index}_own_loss_ce' in losses
        assert f'unsup{index}_peer_loss_ce' in losses
        assert f'unsup{index}_rectified_ratio' in losses
        assert f'unsup{index}_reliable_ratio' in losses
    # Statistics must not be summed into the loss by mmengine.
    stats = ('unsup_teacher_agreement', 'unsup_teacher_tv_distance',
             'unsup1_rectified_ratio', 'unsup2_reliable_ratio')
    assert all(key in losses and 'loss' not in key for key in stats)
    # Threshold 0: every valid pixel is pseudo-labelled.
    assert losses['unsup1_reliable_ratio'].item() == 1.0


def test_warm_up_has_supervised_losses_only():
    model = build_model(unsup_start_iter=5)
    model.train()
    model.set_train_progress(4, 10)
    losses = model.loss(*semi_batch())
    assert not [key for key in losses if key.startswith('unsup')]
    assert 'sup1_decode.loss_ce' in losses and 'sup2_decode.loss_ce' in losses


def test_each_student_learns_from_both_teachers():
    # No rectifier (its prototypes would change between the two calls) and
    # no noise or CutMix: two calls differ only by the teachers.
    model = build_model(rectifier=None)
    inputs, samples = semi_batch()
    model.train()
    before = unsup_losses(model, inputs, samples)
    force_class(model.teacher2, cls=2)
    after = unsup_losses(model, inputs, samples)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {'unsup1_peer_loss_ce', 'unsup2_own_loss_ce'}

    force_class(model.teacher1, cls=0)
    again = unsup_losses(model, inputs, samples)
    changed = {key for key in after if after[key] != again[key]}
    assert changed == {'unsup1_own_loss_ce', 'unsup2_peer_loss_ce'}

    # Teacher 1 labels everything 0, teacher 2 everything 2: the terms are
    # the students' mean cross-entropy to those classes.
    for index, student in ((1, model.student1), (2, model.student2)):
        logits, _ = forward_logits(student, inputs['strong'])
        ce_to = {
            cls: F.cross_entropy(logits, torch.full_like(
                logits[:, 0], cls, dtype=torch.long)).item()
            for cls in (0, 2)
        }
        own, peer = (0, 2) if index == 1 else (2, 0)
        assert again[f'unsup{index}_own_loss_ce'] == pytest.approx(
            ce_to[own], rel=1e-5)
        assert again[f'unsup{index}_peer_loss_ce'] == pytest.approx(
            ce_to[peer], rel=1e-5)


def test_four_unsupervised_weights_scale_their_terms():
    weights = dict(
        unsup1_own_weight=2.0,
        unsup1_peer_weight=0.5,
        unsup2_own_weight=3.0,
        unsup2_peer_weight=0.0)
    inputs, samples = semi_batch()
    plain = build_model(rectifier=None)
    weighted = build_model(rectifier=None, **weights)
    plain.train()
    weighted.train()
    base = unsup_losses(plain, inputs, samples)
    scaled = unsup_losses(weighted, inputs, samples)
    for key, weight in weights.items():
        loss_key = key.replace('_weight', '_loss_ce')
        assert scaled[loss_key] == pytest.approx(
            base[loss_key] * weight, rel=1e-5)


def test_pseudo_labels_are_the_rectified_argmax():
    model = build_model(rectifier=dict(type='PrototypeRectifier',
                                       momentum=0.5, use_prior=False))
    inputs, samples = semi_batch()
    model.train()
    with torch.no_grad():
        _, feats = forward_logits(model.teacher1, inputs['weak'], True)
        # Prototypes far from every feature except class 1's: rectification
        # moves almost every pixel to class 1.
        rectifier = model.rectifier1
        rectifier.prototypes.fill_(1e3)
        rectifier.prototypes[1] = feats.mean(dim=(0, 2, 3))
        rectifier.prototype_initialised.fill_(True)
        logits1, _ = forward_logits(model.student1, inputs['strong'])
        teacher_logits, _ = forward_logits(model.teacher1, inputs['weak'])
        raw_labels = teacher_logits.argmax(dim=1)
    before = rectifier.prototypes.clone()
    losses = model.loss(inputs, samples)
    expected = pseudo_label_cross_entropy(
        logits1, torch.ones_like(raw_labels))
    assert losses['unsup1_own_loss_ce'].item() == pytest.approx(
        expected.item(), rel=1e-5)
    assert losses['unsup1_rectified_ratio'].item() == pytest.approx(
        (raw_labels != 1).float().mean().item())
    assert (raw_labels != 1).any()  # the rectification did change labels
    # The prototypes were updated after rectifying.
    assert not torch.equal(rectifier.prototypes, before)


def count_decode_calls(segmentor):
    """A list that grows by one per forward of ``segmentor``'s head."""
    calls = []
    segmentor.decode_head.register_forward_hook(
        lambda module, args, output: calls.append(args[0][0].shape[0]))
    return calls


@pytest.mark.parametrize('labeled_prototypes', [True, False])
def test_labeled_ground_truth_feeds_the_prototypes(labeled_prototypes):
    """RML Eq. 10: teacher features on the labeled batch, grouped by the
    ground truth, update the prototypes with the weak view's."""
    model = build_model(rectifier=dict(
        type='PrototypeRectifier', momentum=0.5,
        labeled_prototypes=labeled_prototypes))
    inputs, samples = semi_batch()
    model.train()
    # Teacher 1 labels every weak pixel class 0: classes 1 and 2 are only
    # in the labeled batch's ground truth.
    force_class(model.teacher1, 0)
    with torch.no_grad():
        _, feats_l = forward_logits(model.teacher1, inputs['labeled'], True)
        _, feats_u = forward_logits(model.teacher1, inputs['weak'], True)
    gt = torch.stack([s.gt_sem_seg.data[0] for s in samples['labeled']])
    gt = F.interpolate(gt[:, None].float(), size=feats_l.shape[2:],
                       mode='nearest')[:, 0].long()
    calls = count_decode_calls(model.teacher1)
    model.loss(inputs, samples)
    rectifier = model.rectifier1
    # One teacher forward on the weak view, one more on the labeled batch
    # only when the rectifier takes labeled pixels.
    assert len(calls) == (2 if labeled_prototypes else 1)
    if not labeled_prototypes:
        assert rectifier.prototype_initialised.tolist() == [
            True, False, False
        ]
        assert torch.allclose(rectifier.prototypes[0],
                              feats_u.mean(dim=(0, 2, 3)), atol=1e-5)
        return
    assert rectifier.prototype_initialised.all()
    channels_last = feats_l.permute(0, 2, 3, 1)
    for cls in (1, 2):
        expected = channels_last[gt == cls].mean(dim=0)
        assert torch.allclose(rectifier.prototypes[cls], expected,
                              atol=1e-5)
    # Class 0: one centroid over the weak pixels and the labeled ones.
    expected = torch.cat([
        feats_u.permute(0, 2, 3, 1).reshape(-1, feats_u.shape[1]),
        channels_last[gt == 0]
    ]).mean(dim=0)
    assert torch.allclose(rectifier.prototypes[0], expected, atol=1e-5)


def test_contrastive_term_reuses_the_labeled_teacher_forward():
    """RML with U2PL's contrastive term: the labeled teacher forward of the
    rectifier is the one the contrastive term uses (no second one)."""
    from helpers import tiny_contrastive_loss_cfg, tiny_rep_head_cfg
    model = build_model(
        rep_head=tiny_rep_head_cfg(),
        contrastive_loss=tiny_contrastive_loss_cfg(num_classes=NUM_CLASSES))
    model.train()
    calls = count_decode_calls(model.teacher1)
    losses = model.loss(*semi_batch())
    assert len(calls) == 2  # the weak view and the labeled batch
    assert torch.isfinite(losses['unsup1_loss_contrast'])
    assert model.rectifier1.prototype_initialised.all()


def test_identical_teachers_agree_fully():
    model = build_model(rectifier=None)
    model.teacher2.load_state_dict(model.teacher1.state_dict())
    model.train()
    losses = model.loss(*semi_batch())
    assert losses['unsup_teacher_agreement'].item() == 1.0
    assert losses['unsup_teacher_tv_distance'].item() == 0.0


def test_agreement_logging_matches_teacher_outputs():
    model = build_model(rectifier=None)
    force_class(model.teacher2, cls=2, margin=1e4)
    inputs, samples = semi_batch()
    # Pad the weak view on the right: padding must not count.
    for sample in samples['weak']:
        sample.set_metainfo(dict(img_shape=(SIZE, SIZE - 8)))
    model.train()
    losses = model.loss(inputs, samples)
    with torch.no_grad():
        probs1 = forward_logits(model.teacher1,
                                inputs['weak'])[0].softmax(dim=1)
    probs1 = probs1[..., :SIZE - 8]
    assert losses['unsup_teacher_agreement'].item() == pytest.approx(
        (probs1.argmax(dim=1) == 2).float().mean().item())
    # TV to a one-hot on class 2 is 1 - p1(class 2).
    assert losses['unsup_teacher_tv_distance'].item() == pytest.approx(
        (1 - probs1[:, 2]).mean().item(), rel=1e-5)


def test_no_gradient_reaches_teachers_or_the_other_student():
    model = build_model()
    model.train()
    losses = model.loss(*semi_batch())
    total(losses, ('sup1_', 'unsup1_')).backward()
    assert all(p.grad is None for p in model.student2.parameters())
    for teacher in model.teachers():
        assert all(p.grad is None and not p.requires_grad
                   for p in teacher.parameters())
    assert model.student1.decode_head.conv_seg.weight.grad is not None


def test_the_peer_term_reaches_its_student_only():
    model = build_model(rectifier=None)
    model.train()
    losses = model.loss(*semi_batch())
    losses['unsup2_peer_loss_ce'].backward()
    assert model.student2.backbone.stem[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.student1.parameters())


def test_heterogeneous_students_train_and_ensemble():
    model = build_model(segmentor2=tiny_segformer_cfg())
    model.train()
    losses = model.loss(*semi_batch())
    total(losses).backward()
    assert model.student2.backbone.layers[0][0].projection.weight.grad \
        is not None
    model.eval()
    model.predict_on = 'ensemble'
    results = model.predict(torch.randn(1, 3, SIZE, SIZE), data_samples(1))
    assert results[0].pred_sem_seg.data.shape == (1, SIZE, SIZE)


# ------------------------------------------------------------ prediction
def test_ensemble_predicts_the_averaged_teacher_softmax():
    model = build_model()
    model.eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    per_teacher = []
    for name in ('teacher1', 'teacher2'):
        model.predict_on = name
        results = model.predict(images, data_samples(2))
        per_teacher.append(
            torch.stack([r.seg_logits.data for r in results]).softmax(dim=1))
    model.predict_on = 'ensemble'
    results = model.predict(images, data_samples(2))
    ensemble = torch.stack([r.seg_logits.data for r in results])
    average = (per_teacher[0] + per_teacher[1]) / 2
    assert torch.allclose(ensemble.softmax(dim=1), average, atol=1e-6)
    assert torch.equal(
        torch.stack([r.pred_sem_seg.data[0] for r in results]),
        average.argmax(dim=1))
    # The teachers disagree somewhere, so the ensemble is not one of them.
    assert not torch.equal(per_teacher[0].argmax(1), per_teacher[1].argmax(1))
    tensor = model(images, mode='tensor')
    assert torch.allclose(tensor.softmax(dim=1), average, atol=1e-5)
    # Without data samples (inference on raw tensors), too.
    assert len(model.predict(images)) == 2


def test_predict_on_student_uses_that_student():
    model = build_model()
    model.eval()
    images = torch.randn(1, 3, SIZE, SIZE)
    model.predict_on = 'student2'
    via_wrapper = model.predict(images, data_samples(1))[0]
    direct = model.student2.predict(images, data_samples(1))[0]
    assert torch.equal(via_wrapper.seg_logits.data, direct.seg_logits.data)


# ---------------------------------------------------- state and stage 2
def test_prototypes_survive_state_dict_and_mmengine_checkpoints(tmp_path):
    model = build_model()
    model.train()
    model.loss(*semi_batch())
    model.loss(*semi_batch(seed=1))
    state = model.state_dict()
    for name in ('rectifier1', 'rectifier2'):
        assert state[f'{name}.prototype_initialised'].any()
        assert state[f'{name}.prototypes'].abs().sum() > 0
        assert f'{name}.class_prior' in state
    path = str(tmp_path / 'rml.pth')
    save_checkpoint(state, path)
    restored = build_model()
    assert not restored.rectifier1.prototype_initialised.any()
    load_checkpoint(restored, path, strict=True)
    for key, value in restored.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_stage2_state_dict_by_hand():
    state = {
        'teacher1.w': torch.tensor(1.0),
        'student1.w': torch.tensor(2.0),
        'teacher2.w': torch.tensor(3.0),
        'student2.w': torch.tensor(4.0),
        'rectifier1.prototypes': torch.tensor(5.0),
    }
    names = (('teacher1', 'student1'), ('teacher2', 'student2'))
    result = stage2_state_dict(state, names, ['rectifier1'])
    assert {k: v.item() for k, v in result.items()} == {
        'teacher1.w': 1.0,
        'student1.w': 1.0,
        'teacher2.w': 3.0,
        'student2.w': 3.0,
        'rectifier1.prototypes': 5.0,
    }
    with pytest.raises(KeyError, match='rectifier2'):
        stage2_state_dict(state, names, ['rectifier2'])
    with pytest.raises(KeyError, match="'teacher2'"):
        stage2_state_dict({'teacher1.w': torch.tensor(1.0)}, names)


def test_stage2_init_starts_everything_from_stage1_teachers(tmp_path):
    stage1 = build_model()
    stage1.train()
    stage1.loss(*semi_batch())  # fills the prototypes
    with torch.no_grad():
        # Make every network of stage 1 distinct.
        for offset, name in enumerate(stage1.segmentor_names):
            for param in getattr(stage1, name).parameters():
                param.add_(0.01 * (offset + 1))
    path = str(tmp_path / 'stage1.pth')
    save_checkpoint({'state_dict': stage1.state_dict(), 'meta': {}}, path)

    stage2 = build_model(stage2_init=dict(checkpoint=path))
    stage1_state = stage1.state_dict()
    for teacher, student in stage2.teacher_student_names:
        source = {
            k[len(teacher) + 1:]: v
            for k, v in stage1_state.items() if k.startswith(teacher + '.')
        }
        for name in (teacher, student):
            for key, value in getattr(stage2, name).state_dict().items():
                assert torch.equal(value, source[key]), (name, key)
    for name in ('rectifier1', 'rectifier2'):
        assert torch.equal(
            getattr(stage2, name).prototypes,
            stage1_state[f'{name}.prototypes'])
    # Stage 1's students were not used.
    assert not torch.equal(stage2.student1.decode_head.conv_seg.weight,
                           stage1.student1.decode_head.conv_seg.weight)

    fresh = build_model(
        stage2_init=dict(checkpoint=path, load_rectifiers=False))
    assert not fresh.rectifier1.prototype_initialised.any()


def test_stage2_init_errors_name_the_problem(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        build_model(stage2_init=dict(checkpoint=missing))
    plain = str(tmp_path / 'plain.pth')
    save_checkpoint(
        {'state_dict': MODELS.build(tiny_segmentor_cfg()).state_dict()}, plain)
    with pytest.raises(KeyError, match="no 'teacher1' weights"):
        build_model(stage2_init=dict(checkpoint=plain))


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize(
    # The CamVid configs; the paper-setting DeepLabv2 ones have their own
    # checks in tests/configs/test_rml_paper_configs.py, and
    # tests/configs/test_recipes.py checks the values the configs choose.
    'config', sorted(glob.glob(osp.join(RML_CONFIG_DIR, '*camvid*.py'))),
    ids=osp.basename)
def test_rml_configs_build(config):
    """The built model carries what the config asks for: each student's
    noise, channels-last weights, teachers in eval mode."""
    cfg = adapt_config_to_device(Config.fromfile(config))
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DualStudentSegmentor'
    for index in (1, 2):
        student = getattr(model, f'student{index}')
        segmentor_cfg = cfg.model[f'segmentor{index}']
        if segmentor_cfg.backbone.type == 'EfficientNetLite':
            assert student.backbone.drop_path_rate == \
                segmentor_cfg.backbone.drop_path_rate
        dropout = cfg.model[f'student{index}_noise']['dropout']
        assert student.decode_head.dropout.p == dropout
    assert model.channels_last == cfg.model.channels_last
    assert model.student2.decode_head.conv_seg.weight.is_contiguous(
        memory_format=torch.channels_last)
    assert not model.teacher1.training
    assert model.unsup_start_iter == cfg.model.unsup_start_iter
    assert model.pseudo_labeler.alpha_0 == cfg.model.pseudo_labeler.alpha_0
    assert model.unsup_weights == {
        f'{term}{index}': cfg.model[f'unsup{index}_{term}_weight']
        for index in (1, 2) for term in ('own', 'peer')
    }


def tiny_rml_camvid_config(max_iters: int = 2) -> str:
    """Text of a config running the RML CamVid config small on real CamVid.

    64x64 crops of images resized to 1/4 size, batch 2 labeled + 2
    unlabeled, no loader workers, validation on 2 images; ImageNet weights
    kept. Both students drop dilation (output stride 32, ASPP rates 1),
    which is much faster on CPU. The supervised-only warm-up ends after the
    first iteration, so the second trains on pseudo-labels.
    """
    root = camvid_root()
    undilated = ('dict(backbone=dict(output_stride=32), '
                 'decode_head=dict(dilations=(1, 1, 1, 1)))')
    return f"""_base_ = [{RML_CAMVID_CONFIG!r}]
data_root = {root!r}
crop_size = (64, 64)
geometry = [
    dict(type='RandomResize', scale=(120, 90), ratio_range=(0.75, 1.25),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')] + geometry + [
                      dict(type='PackSegInputs')]
test_pipeline = [dict(type='LoadImageFromFile'),
                 dict(type='Resize', scale=crop_size, keep_ratio=False),
                 dict(type='LoadAnnotations'),
                 dict(type='PackSegInputs')]
unlabeled_pipeline = [dict(type='LoadImageFromFile')] + geometry + [
    dict(type='MultiBranch', branches=dict(
        weak=[dict(type='PackSegInputs')],
        strong=[dict(type='RandomApply', prob=0.8,
                     transforms=[dict(type='RandomColorJitter')]),
                dict(type='PackSegInputs')]))]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline, indices=2))
test_dataloader = val_dataloader
model = dict(unsup_start_iter=1, segmentor1={undilated},
             segmentor2={undilated})
train_cfg = dict(
    max_iters={max_iters}, val_interval=1000,
    unlabeled_dataloader=dict(
        **loader,
        dataset=dict(data_root=data_root, pipeline=unlabeled_pipeline)))
randomness = dict(seed=0, deterministic=True)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval={max_iters}),
    visualization=dict(type='SegVisualizationHook', draw=False))
param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                        end={max_iters}, by_epoch=False)]
"""


def test_rml_camvid_training_end_to_end(tmp_path):
    """Two iterations of the RML CamVid config through tools/train.py; the
    second one trains on pseudo-labels; validation reports every network."""
    config = tmp_path / 'rml_tiny.py'
    config.write_text(tiny_rml_camvid_config(max_iters=2))
    work_dir = tmp_path / 'work'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(
        [
            sys.executable,
            osp.join(REPO_ROOT, 'tools', 'train.py'),
            str(config), '--work-dir',
            str(work_dir)
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    scalars = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    assert len(scalars) == 1
    records = [json.loads(line) for line in open(scalars[0])]
    train = [r for r in records if 'unsup1_own_loss_ce' in r]
    assert train and 'unsup_teacher_agreement' in train[-1]
    assert 'unsup1_rectified_ratio' in train[-1]
    val = [r for r in records if 'teacher1/mIoU' in r]
    assert val, records
    for name in ('student1', 'teacher2', 'student2', 'ensemble'):
        assert f'{name}/mIoU' in val[-1]
    checkpoint = torch.load(
        work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert checkpoint['state_dict']['rectifier1.prototype_initialised'].any()


def test_dual_student_has_one_alignment_and_monitor_per_teacher():
    model = build_model(class_balance=dict(type='DistributionAlignment'))
    inputs, samples = semi_batch()
    model.train()
    losses = model.loss(inputs, samples)
    assert torch.isfinite(losses['unsup1_own_loss_ce'])
    assert model.class_balance1 is not model.class_balance2
    for balance in (model.class_balance1, model.class_balance2):
        assert bool(balance.labeled_initialised)
        assert bool(balance.teacher_initialised)
    monitors = model.class_share_monitors()
    assert list(monitors) == ['teacher1/', 'teacher2/']
    for monitor in monitors.values():
        assert monitor.read_and_reset()['predicted'].sum() > 0


# ------------------------------------------------------- memory format
def test_channels_last_model_trains_like_the_contiguous_one(tmp_path):
    """``channels_last=True`` changes the layout, not the model: same
    losses and gradients, teachers and students both NHWC, EMA and
    checkpoints work across layouts."""
    from mmseg_semi.engine.hooks.ema_teacher_hook import ema_update_
    contiguous = build_model()
    nhwc = build_model(channels_last=True)
    nhwc.load_state_dict(contiguous.state_dict())
    kernels = [p for p in nhwc.parameters() if p.dim() == 4]
    assert kernels and all(
        p.is_contiguous(memory_format=torch.channels_last)
        and not p.is_contiguous() for p in kernels
        if p.shape[2:] != (1, 1))
    assert all(p.is_contiguous()
               for p in contiguous.parameters() if p.dim() == 4)
    totals = []
    for model in (contiguous, nhwc):
        model.set_train_progress(5, 10)
        model.train()
        inputs, samples = semi_batch()
        torch.manual_seed(1)  # the same dropout draws
        losses = model.loss(inputs, samples)
        loss = total(losses)
        loss.backward()
        totals.append(loss.detach())
    torch.testing.assert_close(totals[0], totals[1], rtol=1e-4, atol=1e-5)
    for (name, p_ref), p in zip(contiguous.named_parameters(),
                                nhwc.parameters()):
        if p_ref.grad is None:
            assert p.grad is None, name
            continue
        torch.testing.assert_close(
            p.grad, p_ref.grad, rtol=1e-3, atol=1e-5, msg=name)
    # The EMA keeps the teacher's layout; a checkpoint of the NHWC model
    # loads into a contiguous one with the same values.
    ema_update_(nhwc.teacher1, nhwc.student1, 0.5)
    kernel = nhwc.teacher1.decode_head.conv_seg.weight
    assert kernel.dim() == 4
    assert all(p.is_contiguous(memory_format=torch.channels_last)
               for p in nhwc.teacher1.parameters() if p.dim() == 4)
    save_checkpoint(nhwc.state_dict(), str(tmp_path / 'nhwc.pth'))
    plain = build_model()
    load_checkpoint(plain, str(tmp_path / 'nhwc.pth'), strict=True)
    for (name, value), reference in zip(plain.state_dict().items(),
                                        nhwc.state_dict().values()):
        assert torch.equal(value, reference), name


def test_channels_last_must_be_a_bool():
    with pytest.raises(ValueError, match='channels_last'):
        build_model(channels_last='yes')
