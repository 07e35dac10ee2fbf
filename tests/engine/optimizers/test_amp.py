"""Mixed precision: AnyDeviceAmpOptimWrapper (bfloat16 on CPU) trains U2PL
and RML; the float32 islands (softmax, entropy, InfoNCE, prototypes) hold
under float16/bfloat16 inputs and autocast."""
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import init_default_scope
from torch import nn

import mmseg_semi  # noqa: F401
from helpers import (single_thread, tiny_raw_semi_batch,  # noqa: F401
                     tiny_segmentor_cfg, tiny_u2pl_cfg)
from mmseg.registry import MODELS, OPTIM_WRAPPERS
from mmseg_semi.engine.optimizers import AnyDeviceAmpOptimWrapper
from mmseg_semi.models.losses import U2PLContrastiveLoss
from mmseg_semi.models.pseudo_labelers import (EntropyPseudoLabeler,
                                               PrototypeRectifier)
from mmseg_semi.models.utils import pseudo_label_cross_entropy
from mmseg_semi.models.utils.contrastive_functional import info_nce
from mmseg_semi.models.utils.pseudo_label_functional import pixel_entropy
from mmseg_semi.utils import adapt_config_to_device

init_default_scope('mmseg')
LOW_PRECISION = (torch.float16, torch.bfloat16)


@pytest.fixture
def cpu_only(monkeypatch):
    """Run as on a machine without a GPU, whatever this one has."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    # mmengine decides its device once, at import; every get_device() (our
    # wrapper's and mmengine's autocast) reads this.
    monkeypatch.setattr('mmengine.device.utils.DEVICE', 'cpu')


def sgd(model):
    return torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.05)


# ------------------------------------------------------------- the wrapper
def test_mmengine_amp_wrapper_refuses_cpu_ours_does_not(cpu_only):
    """Why the subclass exists: if mmengine starts accepting CPUs this test
    says so and the subclass can go."""
    params = nn.Linear(2, 2).parameters()
    with pytest.raises(AssertionError, match='gpu'):
        AmpOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1))
    wrapper = AnyDeviceAmpOptimWrapper(
        optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    assert wrapper.cast_dtype == torch.bfloat16
    assert not wrapper.loss_scaler.is_enabled()
    assert OPTIM_WRAPPERS.get('AnyDeviceAmpOptimWrapper') is \
        AnyDeviceAmpOptimWrapper


@pytest.mark.parametrize('dtype', ['float16', torch.float16, 'float32'])
def test_cpu_refuses_other_dtypes_naming_the_key(cpu_only, dtype):
    with pytest.raises(ValueError, match=r'optim_wrapper\.dtype=.*float'):
        AnyDeviceAmpOptimWrapper(
            dtype=dtype,
            optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))


def test_amp_config_becomes_any_device_wrapper_on_cpu(cpu_only):
    """``tools/train.py --amp`` writes AmpOptimWrapper; without a GPU it is
    replaced, float16 is refused with the key named."""
    cfg = Config(dict(model=dict(type='X'), optim_wrapper=dict(
        type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict())))
    adapt_config_to_device(cfg)
    assert cfg.optim_wrapper.type == 'AnyDeviceAmpOptimWrapper'
    cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype='float16')
    with pytest.raises(ValueError, match="optim_wrapper.dtype='float16'"):
        adapt_config_to_device(cfg)


# ----------------------------------------------------- two training steps
def u2pl_cfg():
    return tiny_u2pl_cfg(cutmix=dict(prob=1.0))


def rml_cfg():
    return dict(type='DualStudentSegmentor',
                segmentor1=tiny_segmentor_cfg(),
                student1_noise=dict(dropout=0.1),
                student2_noise=dict(dropout=0.1))


@pytest.mark.parametrize('cfg, students, unsup_key', [
    (u2pl_cfg, ('student', 'student_rep_head'), 'unsup_loss_contrast'),
    (rml_cfg, ('student1', 'student2'), 'unsup2_peer_loss_ce'),
])
def test_two_bf16_steps_on_cpu(cpu_only, cfg, students, unsup_key):
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(cfg()))
    model.init_weights()
    model.set_train_progress(1, 10)
    wrapper = AnyDeviceAmpOptimWrapper(
        dtype='bfloat16', nonfinite_loss='raise', optimizer=sgd(model))
    wrapper.message_hub.update_info('iter', 1)
    conv_dtypes = []
    first_conv = next(m for m in getattr(model, students[0]).modules()
                      if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(
        lambda module, args, out: conv_dtypes.append(out.dtype))
    before = {name: [p.detach().clone()
                     for p in getattr(model, name).parameters()]
              for name in students}
    for step in range(2):
        model.train()
        log_vars = model.train_step(tiny_raw_semi_batch(step), wrapper)
        assert unsup_key in log_vars
        for key, value in log_vars.items():
            assert torch.isfinite(value.detach()).all(), (key, value)
    assert torch.bfloat16 in conv_dtypes  # autocast was really on
    for name, old in before.items():
        new = list(getattr(model, name).parameters())
        assert all(p.dtype == torch.float32 for p in new)  # masters: fp32
        assert any(not torch.equal(a, b) for a, b in zip(old, new)), name


# ------------------------------------------------ float32 islands
@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_entropy_and_pseudo_label_ce_are_float32(dtype):
    probs = torch.softmax(torch.randn(2, 3, 4, 4) * 3, dim=1)
    entropy = pixel_entropy(probs.to(dtype))
    assert entropy.dtype == torch.float32
    torch.testing.assert_close(entropy, pixel_entropy(probs), atol=2e-2,
                               rtol=0)
    pseudo = EntropyPseudoLabeler(alpha_0=0.2)(probs.to(dtype), None,
                                               (1, 10))
    assert pseudo.probs.dtype == pseudo.weight.dtype == torch.float32
    logits = torch.randn(2, 3, 4, 4) * 30  # large: overflows if not fp32
    labels = torch.randint(0, 3, (2, 4, 4))
    loss = pseudo_label_cross_entropy(logits.to(dtype), labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    reference = pseudo_label_cross_entropy(logits.to(dtype).float(), labels)
    torch.testing.assert_close(loss, reference)


@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_info_nce_is_float32_and_matches_float32(dtype):
    torch.manual_seed(0)
    anchors = torch.randn(2, 3, 8)
    positives = torch.randn(2, 8)
    negatives = torch.randn(2, 3, 5, 8) * 100  # norms beyond fp16's eps
    valid = torch.tensor([True, True])
    low = info_nce(anchors.to(dtype), positives.to(dtype),
                   negatives.to(dtype), 0.1, valid)
    reference = info_nce(anchors.to(dtype).float(),
                         positives.to(dtype).float(),
                         negatives.to(dtype).float(), 0.1, valid)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, reference)


def test_contrastive_loss_under_cpu_bf16_autocast_is_float32():
    torch.manual_seed(0)
    loss = U2PLContrastiveLoss(num_classes=3, feat_channels=8,
                               num_anchors=4, num_negatives=6,
                               anchor_prob_threshold=0.0, low_rank=1,
                               high_rank=3, queue_size=64)
    student = torch.randn(2, 8, 4, 4, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        value = loss(
            student_reps=student,
            teacher_reps=torch.randn(2, 8, 4, 4),
            labels=torch.randint(0, 3, (2, 4, 4)),
            teacher_probs=torch.softmax(torch.randn(2, 3, 4, 4), dim=1),
            unreliable=torch.rand(2, 4, 4) > 0.5,
            is_labeled=torch.tensor([True, False]))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize('dtype', LOW_PRECISION)
def test_rectifier_low_precision_inputs_keep_float32_state(dtype):
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=4,
                                   momentum=0.5)
    feats = torch.randn(1, 4, 2, 2) * 300  # squares overflow float16
    probs = torch.softmax(torch.randn(1, 3, 2, 2), dim=1)
    rectifier.update(feats.to(dtype), probs.to(dtype))
    assert rectifier.prototypes.dtype == torch.float32
    assert torch.isfinite(rectifier.prototypes).all()
    rectified, _ = rectifier(probs.to(dtype), feats.to(dtype))
    assert rectified.dtype == torch.float32
    assert torch.isfinite(rectified).all()
    torch.testing.assert_close(rectified.sum(dim=1),
                               torch.ones(1, 2, 2))
