"""Pseudo-label math (U2PL Eq. 3, 5-8) and the pseudo-labelers."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_semi.models.pseudo_labelers import (BasePseudoLabeler,
                                               ConfidencePseudoLabeler,
                                               EntropyPseudoLabeler,
                                               PseudoLabels)
from mmseg_semi.models.utils.pseudo_label_functional import (
    adaptive_unsup_weight, class_argmax, dynamic_partition_alpha,
    entropy_quantile_threshold, pixel_entropy, pseudo_label_cross_entropy)

IGNORE = 255


def entropy_of(*probs):
    """Entropy of one pixel written out term by term (0 log 0 = 0)."""
    return -sum(p * math.log(p) for p in probs if p > 0)


def probs_1x5():
    """B=1, C=3, H=1, W=5 teacher probabilities used by several tests.

    Pixel entropies: 0, H(.1,.8,.1), H(.2,.2,.6), ln 3, 0.
    """
    pixels = [
        [1.0, 0.0, 0.0],
        [0.1, 0.8, 0.1],
        [0.2, 0.2, 0.6],
        [1 / 3, 1 / 3, 1 / 3],
        [0.0, 0.0, 1.0],
    ]
    return torch.tensor(pixels).t().reshape(1, 3, 1, 5)


# The last pixel is padding in the end-to-end tests.
VALID_1x5 = torch.tensor([[[True, True, True, True, False]]])


# ---------------------------------------------------------------- Eq. 5


def test_pixel_entropy_hand_values():
    uniform = torch.full((1, 4, 1, 1), 0.25)
    one_hot = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    mixed = torch.tensor([0.5, 0.25, 0.25]).view(1, 3, 1, 1)
    assert pixel_entropy(uniform).item() == pytest.approx(math.log(4))
    assert pixel_entropy(one_hot).item() == 0.0
    assert pixel_entropy(mixed).item() == pytest.approx(1.5 * math.log(2))


def test_pixel_entropy_shape_and_dim():
    probs = probs_1x5()
    entropy = pixel_entropy(probs)
    assert entropy.shape == (1, 1, 5)
    expected = [0.0, entropy_of(.1, .8, .1), entropy_of(.2, .2, .6),
                math.log(3), 0.0]
    assert entropy.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    # Class dimension last gives the same values.
    last = pixel_entropy(probs.permute(0, 2, 3, 1), dim=-1)
    assert torch.allclose(last, entropy)


def test_pixel_entropy_half_precision_is_float32_and_finite():
    probs = probs_1x5()
    for dtype in (torch.float16, torch.bfloat16):
        entropy = pixel_entropy(probs.to(dtype))
        assert entropy.dtype == torch.float32
        assert torch.isfinite(entropy).all()
        # Exact zeros in half precision still give exactly zero entropy.
        assert entropy[0, 0, 0].item() == 0.0
        assert entropy[0, 0, 4].item() == 0.0


def test_pixel_entropy_rejects_bad_input():
    with pytest.raises(ValueError, match='floating point'):
        pixel_entropy(torch.ones(1, 3, 2, 2, dtype=torch.long))
    # torch itself refuses a dimension that does not exist.
    with pytest.raises(IndexError):
        pixel_entropy(torch.ones(1, 3, 2, 2), dim=4)


def test_pixel_entropy_tiny_probabilities_use_eps_in_the_log():
    # p = 1e-30 is clamped to eps=1e-10 inside the log only.
    probs = torch.tensor([1e-30, 1.0 - 1e-30]).view(1, 2, 1, 1)
    expected = -1e-30 * math.log(1e-10)
    assert pixel_entropy(probs).item() == pytest.approx(expected, rel=1e-5)


def test_class_argmax_equals_argmax_including_ties():
    torch.manual_seed(0)
    scores = torch.randn(3, 7, 5, 6)
    assert torch.equal(class_argmax(scores), scores.argmax(dim=1))
    assert torch.equal(class_argmax(scores, dim=-1), scores.argmax(dim=-1))
    # Ties: the first maximal class wins, as with argmax.
    tied = torch.tensor([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45],
                         [1 / 3, 1 / 3, 1 / 3]]).T.reshape(1, 3, 3, 1)
    assert class_argmax(tied).flatten().tolist() == [0, 1, 0]
    assert torch.equal(class_argmax(tied), tied.argmax(dim=1))
    assert class_argmax(tied).dtype == torch.int64


# ---------------------------------------------------------------- Eq. 6


def test_quantile_threshold_hand_example():
    # Sorted entropies 0.1..0.5, alpha 0.2 -> 80th percentile. Virtual
    # index 0.8 * (5 - 1) = 3.2, so 0.4 + 0.2 * (0.5 - 0.4) = 0.42.
    entropy = torch.tensor([0.3, 0.5, 0.1, 0.4, 0.2])
    valid = torch.ones(5, dtype=torch.bool)
    threshold = entropy_quantile_threshold(entropy, valid, 0.2)
    assert threshold.dim() == 0 and threshold.dtype == torch.float32
    assert threshold.item() == pytest.approx(0.42, abs=1e-6)
    reliable = valid & (entropy < threshold)
    assert reliable.tolist() == [True, False, True, True, True]


def test_quantile_threshold_matches_numpy_percentile():
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 1, 1), (2, 3, 4), (3, 7, 5)]:
        entropy = torch.rand(shape, generator=generator) * 3
        valid = torch.rand(shape, generator=generator) < 0.7
        valid.view(-1)[0] = True  # at least one valid pixel
        for alpha in (0.05, 0.2, 0.37, 0.5, 0.99, 1.0):
            expected = np.percentile(entropy[valid].numpy(),
                                     100 * (1 - alpha))
            got = entropy_quantile_threshold(entropy, valid, alpha)
            assert got.item() == pytest.approx(float(expected), abs=1e-6)


def test_quantile_threshold_excludes_invalid_pixels():
    entropy = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 100.0, -100.0])
    valid = torch.tensor([True] * 5 + [False, False])
    threshold = entropy_quantile_threshold(entropy, valid, 0.2)
    assert threshold.item() == pytest.approx(0.42, abs=1e-6)


def test_quantile_threshold_alpha_edge_cases():
    entropy = torch.tensor([0.7, 0.2, 0.9, 0.4])
    valid = torch.tensor([True, True, True, False])
    # alpha 0: every valid pixel reliable, including the most uncertain.
    threshold = entropy_quantile_threshold(entropy, valid, 0.0)
    assert threshold.item() == math.inf
    assert (valid & (entropy < threshold)).tolist() == [True, True, True,
                                                        False]
    # alpha 1: the threshold is the smallest valid entropy, none reliable.
    threshold = entropy_quantile_threshold(entropy, valid, 1.0)
    assert threshold.item() == pytest.approx(0.2)
    assert not (valid & (entropy < threshold)).any()


def test_quantile_threshold_no_valid_pixel_is_finite():
    entropy = torch.tensor([[0.3, 0.1], [0.2, 0.4]])
    valid = torch.zeros(2, 2, dtype=torch.bool)
    for alpha in (0.2, 1.0):
        threshold = entropy_quantile_threshold(entropy, valid, alpha)
        assert threshold.item() == 0.0
    # A single valid pixel is its own quantile.
    valid[1, 0] = True
    threshold = entropy_quantile_threshold(entropy, valid, 0.2)
    assert threshold.item() == pytest.approx(0.2)


def test_quantile_threshold_rejects_bad_input():
    entropy = torch.rand(2, 3)
    with pytest.raises(ValueError, match='same shape'):
        entropy_quantile_threshold(entropy, torch.ones(3, 2, dtype=bool), .2)
    with pytest.raises(ValueError, match='bool'):
        entropy_quantile_threshold(entropy, torch.ones(2, 3), 0.2)
    for alpha in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match='alpha'):
            entropy_quantile_threshold(entropy,
                                       torch.ones(2, 3, dtype=bool), alpha)


# ---------------------------------------------------------------- Eq. 7


def test_dynamic_partition_alpha_schedule():
    assert dynamic_partition_alpha(0.2, 0, 1000) == pytest.approx(0.2)
    assert dynamic_partition_alpha(0.2, 500, 1000) == pytest.approx(0.1)
    assert dynamic_partition_alpha(0.2, 750, 1000) == pytest.approx(0.05)
    assert dynamic_partition_alpha(0.2, 1000, 1000) == 0.0
    # Past the end alpha stays 0 instead of going negative.
    assert dynamic_partition_alpha(0.2, 1500, 1000) == 0.0


def test_dynamic_partition_alpha_rejects_bad_input():
    with pytest.raises(ValueError, match='alpha_0'):
        dynamic_partition_alpha(1.2, 0, 10)
    with pytest.raises(ValueError, match='iteration'):
        dynamic_partition_alpha(0.2, -1, 10)
    with pytest.raises(ValueError, match='max_iters'):
        dynamic_partition_alpha(0.2, 0, 0)


# ---------------------------------------------------------------- Eq. 8


def test_adaptive_weight_by_hand():
    reliable = torch.tensor([[[True, False], [True, False]],
                             [[False, False], [True, False]]])
    # B * H * W = 8 pixels, 3 reliable -> 8 / 3 * eta.
    weight = adaptive_unsup_weight(reliable)
    assert weight.dim() == 0 and weight.dtype == torch.float32
    assert weight.item() == pytest.approx(8 / 3)
    assert adaptive_unsup_weight(reliable, eta=0.5).item() == \
        pytest.approx(4 / 3)
    assert adaptive_unsup_weight(torch.ones(2, 2, 2, dtype=bool)).item() == \
        pytest.approx(1.0)


def test_adaptive_weight_zero_reliable_is_zero():
    weight = adaptive_unsup_weight(torch.zeros(2, 2, 2, dtype=torch.bool))
    assert weight.item() == 0.0


def test_adaptive_weight_rejects_bad_input():
    with pytest.raises(ValueError, match='bool'):
        adaptive_unsup_weight(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match='eta'):
        adaptive_unsup_weight(torch.ones(2, 2, 2, dtype=bool), eta=-1.0)


# ---------------------------------------------------------------- Eq. 3


def test_pseudo_label_cross_entropy_by_hand():
    # B=1, C=2, H=1, W=3. Pixel 0: logits (0, 0), label 0 -> ln 2.
    # Pixel 1: logits (ln 3, 0), label 1 -> -log(1/4) = ln 4.
    # Pixel 2: ignored. L_u = (ln 2 + ln 4) / 3 = ln 2.
    logits = torch.tensor([[0.0, math.log(3), 5.0],
                           [0.0, 0.0, -5.0]]).view(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, IGNORE]]])
    loss = pseudo_label_cross_entropy(logits, labels)
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(math.log(2))


def test_class_weighted_pseudo_label_cross_entropy_by_hand():
    # The pixels of test_pseudo_label_cross_entropy_by_hand with class
    # weights (1, 3): sum w * CE = ln 2 + 3 ln 4 = 7 ln 2, mean weight of
    # the 2 labeled pixels = 2, so L_u = 7 ln 2 / 2 / 3 pixels.
    logits = torch.tensor([[0.0, math.log(3), 5.0],
                           [0.0, 0.0, -5.0]]).view(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, IGNORE]]])
    weight = torch.tensor([1.0, 3.0])
    loss = pseudo_label_cross_entropy(logits, labels, class_weight=weight)
    assert loss.item() == pytest.approx(7 * math.log(2) / 2 / 3)
    # Equal weights change nothing; an all-ignored batch gives 0, not NaN.
    assert pseudo_label_cross_entropy(
        logits, labels, class_weight=torch.tensor([2.0, 2.0])).item() == \
        pytest.approx(math.log(2))
    all_ignored = torch.full_like(labels, IGNORE)
    assert pseudo_label_cross_entropy(
        logits, all_ignored, class_weight=weight).item() == 0.0
    # F.cross_entropy refuses a weight that is not one per class.
    with pytest.raises(RuntimeError):
        pseudo_label_cross_entropy(
            logits, labels, class_weight=torch.ones(3))


def test_weighted_loss_is_eta_times_mean_reliable_ce():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 3, 3, generator=generator)
    labels = torch.randint(0, 4, (2, 3, 3), generator=generator)
    reliable = torch.rand(2, 3, 3, generator=generator) < 0.5
    reliable[0, 0, 0] = True
    labels = labels.masked_fill(~reliable, IGNORE)
    # Explicit per-pixel cross-entropy: -log softmax at the label.
    log_probs = logits.log_softmax(dim=1)
    per_pixel = -log_probs.gather(
        1, labels.clamp_max(3).unsqueeze(1)).squeeze(1)
    expected_loss = per_pixel[reliable].sum() / labels.numel()
    loss = pseudo_label_cross_entropy(logits, labels)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-5)
    eta = 0.7
    weighted = adaptive_unsup_weight(reliable, eta=eta) * loss
    assert weighted.item() == pytest.approx(
        eta * per_pixel[reliable].mean().item(), rel=1e-5)


def test_gradient_only_at_reliable_pixels():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 3, 2, 2, generator=generator,
                         requires_grad=True)
    labels = torch.tensor([[[2, IGNORE], [IGNORE, 0]]])
    pseudo_label_cross_entropy(logits, labels).backward()
    grad = logits.grad
    assert grad[0, :, 0, 1].abs().sum() == 0
    assert grad[0, :, 1, 0].abs().sum() == 0
    # d CE / d logits = softmax - one_hot, divided by B*H*W = 4.
    expected = (logits[0, :, 0, 0].softmax(0) -
                F.one_hot(torch.tensor(2), 3)) / 4
    assert torch.allclose(grad[0, :, 0, 0], expected.detach(), atol=1e-6)


def test_zero_reliable_loss_and_weight_are_finite_zero():
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    labels = torch.full((2, 2, 2), IGNORE, dtype=torch.long)
    weight = adaptive_unsup_weight(labels != IGNORE)
    total = weight * pseudo_label_cross_entropy(logits, labels)
    assert total.item() == 0.0
    total.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() == 0


def test_pseudo_label_cross_entropy_half_logits_give_float32():
    logits = torch.tensor([0.0, 0.0]).view(1, 2, 1, 1)
    labels = torch.tensor([[[1]]])
    for dtype in (torch.float16, torch.bfloat16):
        loss = pseudo_label_cross_entropy(logits.to(dtype), labels)
        assert loss.dtype == torch.float32
        assert loss.item() == pytest.approx(math.log(2), rel=1e-6)


def test_pseudo_label_cross_entropy_rejects_bad_input():
    # Shapes and the label dtype are F.cross_entropy's checks; only the
    # empty batch (0 / 0, silently NaN) is the function's own.
    logits = torch.randn(2, 3, 4, 4)
    for bad_labels in (torch.zeros(2, 1, 4, 4).long(),
                       torch.zeros(2, 8, 8).long(),
                       torch.zeros(1, 4, 4).long(), torch.zeros(2, 4, 4)):
        with pytest.raises((ValueError, RuntimeError)):
            pseudo_label_cross_entropy(logits, bad_labels)
    with pytest.raises((ValueError, RuntimeError)):
        pseudo_label_cross_entropy(logits[0], torch.zeros(2, 4, 4).long())
    with pytest.raises(ValueError, match='empty'):
        pseudo_label_cross_entropy(logits[:0], torch.zeros(0, 4, 4).long())


# ------------------------------------------------------ EntropyPseudoLabeler


def test_entropy_labeler_end_to_end():
    # The paper's batch-wide quantile (Eq. 6).
    labeler = EntropyPseudoLabeler(alpha_0=0.2, eta=1.0, class_wise=False)
    result = labeler(probs_1x5(), VALID_1x5, progress=(0, 100))
    assert isinstance(result, PseudoLabels)
    # Valid entropies sorted: 0, H1, H2, ln 3; virtual index 0.8 * 3 = 2.4.
    h2 = entropy_of(.2, .2, .6)
    expected_threshold = h2 + 0.4 * (math.log(3) - h2)
    assert result.alpha == pytest.approx(0.2)
    assert result.threshold.item() == pytest.approx(expected_threshold,
                                                    rel=1e-6)
    assert result.reliable.tolist() == [[[True, True, True, False, False]]]
    # The padding pixel is confident but never labelled.
    assert result.labels.tolist() == [[[0, 1, 2, IGNORE, IGNORE]]]
    assert result.labels.dtype == torch.long
    assert result.unreliable.tolist() == [[[False, False, False, True,
                                            False]]]
    # 5 pixels, 3 reliable.
    assert result.weight.item() == pytest.approx(5 / 3)
    assert torch.equal(result.valid, VALID_1x5)
    assert torch.allclose(result.entropy, pixel_entropy(probs_1x5()))
    assert torch.equal(result.probs, probs_1x5())


def test_entropy_labeler_alpha_schedule():
    probs = probs_1x5()
    linear = EntropyPseudoLabeler(alpha_0=0.2)
    assert linear(probs, VALID_1x5, (50, 100)).alpha == pytest.approx(0.1)
    # At the end alpha is 0: every valid pixel is reliable; the uniform
    # pixel takes the first maximal class.
    final = linear(probs, VALID_1x5, (100, 100))
    assert final.alpha == 0.0
    assert final.labels.tolist() == [[[0, 1, 2, 0, IGNORE]]]
    assert final.weight.item() == pytest.approx(5 / 4)
    constant = EntropyPseudoLabeler(alpha_0=0.2, schedule='constant')
    assert constant(probs, VALID_1x5, (50, 100)).alpha == pytest.approx(0.2)


def test_entropy_labeler_threshold_is_batch_level():
    # Image 0 is confident everywhere, image 1 uncertain everywhere; with
    # alpha 0.5 the shared threshold drops all of image 1.
    confident = torch.tensor([0.9, 0.05, 0.05]).view(1, 3, 1, 1)
    uncertain = torch.tensor([0.4, 0.3, 0.3]).view(1, 3, 1, 1)
    probs = torch.cat([confident.expand(1, 3, 2, 2),
                       uncertain.expand(1, 3, 2, 2)])
    labeler = EntropyPseudoLabeler(alpha_0=0.5, schedule='constant')
    result = labeler(probs)
    assert result.reliable[0].all() and not result.reliable[1].any()
    assert result.weight.item() == pytest.approx(8 / 4)


def test_entropy_labeler_nothing_reliable():
    labeler = EntropyPseudoLabeler(alpha_0=1.0, schedule='constant')
    result = labeler(probs_1x5(), VALID_1x5)
    assert not result.reliable.any()
    assert (result.labels == IGNORE).all()
    assert result.weight.item() == 0.0
    # No valid pixel at all: no error, nothing reliable, finite outputs.
    empty = EntropyPseudoLabeler()(probs_1x5(), torch.zeros_like(VALID_1x5))
    assert not empty.reliable.any()
    assert empty.weight.item() == 0.0
    assert torch.isfinite(empty.threshold)


def test_entropy_labeler_constant_weight():
    labeler = EntropyPseudoLabeler(eta=0.3, adaptive_weight=False)
    result = labeler(probs_1x5(), VALID_1x5)
    assert result.weight.dtype == torch.float32
    assert result.weight.item() == pytest.approx(0.3)


def test_entropy_labeler_custom_ignore_index():
    labeler = EntropyPseudoLabeler(ignore_index=-1, class_wise=False)
    result = labeler(probs_1x5(), VALID_1x5)
    assert result.labels.tolist() == [[[0, 1, 2, -1, -1]]]


def test_labelers_half_precision_probs():
    for labeler in (EntropyPseudoLabeler(), ConfidencePseudoLabeler(0.7)):
        reference = labeler(probs_1x5(), VALID_1x5)
        for dtype in (torch.float16, torch.bfloat16):
            result = labeler(probs_1x5().to(dtype), VALID_1x5)
            for tensor in (result.probs, result.entropy, result.weight,
                           result.threshold):
                assert tensor.dtype == torch.float32
                assert torch.isfinite(tensor).all()
            assert torch.equal(result.labels, reference.labels)


def test_labeler_detaches_probs():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    result = EntropyPseudoLabeler()(logits.softmax(dim=1))
    assert not result.probs.requires_grad
    assert not result.weight.requires_grad
    assert result.valid.all() and result.valid.shape == (1, 2, 2)


# --------------------------------------------------- ConfidencePseudoLabeler


def test_confidence_labeler_end_to_end():
    labeler = ConfidencePseudoLabeler(threshold=0.7, weight=2.0)
    result = labeler(probs_1x5(), VALID_1x5, progress=(3, 10))
    # Max probs 1, .8, .6, 1/3 and the padding pixel.
    assert result.reliable.tolist() == [[[True, True, False, False, False]]]
    assert result.labels.tolist() == [[[0, 1, IGNORE, IGNORE, IGNORE]]]
    assert result.weight.item() == 2.0
    assert result.threshold.item() == pytest.approx(0.7)
    assert result.alpha is None
    assert result.unreliable.tolist() == [[[False, False, True, True,
                                            False]]]


def test_confidence_labeler_threshold_is_inclusive():
    probs = torch.tensor([0.75, 0.25]).view(1, 2, 1, 1)
    assert ConfidencePseudoLabeler(0.75)(probs).reliable.all()


# ------------------------------------------------------------ host syncs


@pytest.fixture
def forbid_host_sync(monkeypatch):
    """Make every tensor-to-Python conversion raise while the test runs."""

    def host_sync(*args, **kwargs):
        raise AssertionError('host sync in the pseudo-labelling hot path')

    for name in ('item', 'tolist', 'cpu', 'numpy', '__bool__', '__int__',
                 '__float__', '__index__'):
        monkeypatch.setattr(torch.Tensor, name, host_sync)


def test_hot_path_has_no_host_sync(forbid_host_sync):
    probs = probs_1x5()
    logits = torch.randn(1, 3, 1, 5, requires_grad=True)
    outputs = []
    for labeler in (EntropyPseudoLabeler(), ConfidencePseudoLabeler(0.7)):
        result = labeler(probs, VALID_1x5, progress=(10, 100))
        loss = result.weight * pseudo_label_cross_entropy(
            logits, result.labels)
        loss.backward()
        outputs.append(loss.detach())
    with pytest.raises(AssertionError, match='host sync'):
        outputs[0].item()  # the fixture really intercepts conversions


# --------------------------------------------------------- errors, registry


def test_labelers_reject_bad_input():
    labeler = EntropyPseudoLabeler()
    probs = probs_1x5()
    with pytest.raises(ValueError, match='probs must be a torch.Tensor'):
        labeler(probs.tolist())
    with pytest.raises(ValueError,
                       match=r'4-D tensor .* got shape \(3, 1, 5\)'):
        labeler(probs[0])
    with pytest.raises(ValueError, match='floating point'):
        labeler(probs.long())
    with pytest.raises(ValueError, match='empty'):
        labeler(torch.ones(0, 3, 2, 2))
    with pytest.raises(ValueError, match=r'valid_mask must have shape'):
        labeler(probs, VALID_1x5[0])
    with pytest.raises(ValueError, match='valid_mask must be a torch.Tensor'):
        labeler(probs, VALID_1x5.tolist())
    with pytest.raises(ValueError, match='bool'):
        labeler(probs, VALID_1x5.long())
    with pytest.raises(ValueError, match='progress'):
        labeler(probs, VALID_1x5, progress=(5,))
    with pytest.raises(ValueError, match='max_iters'):
        labeler(probs, VALID_1x5, progress=(0, 0))
    with pytest.raises(ValueError, match='iteration'):
        labeler(probs, VALID_1x5, progress=(-1, 10))
    with pytest.raises(ValueError, match='ignore_index=1 collides'):
        EntropyPseudoLabeler(ignore_index=1)(probs)


def test_labelers_reject_bad_config():
    with pytest.raises(ValueError, match='alpha_0'):
        EntropyPseudoLabeler(alpha_0=1.5)
    with pytest.raises(ValueError, match='eta'):
        EntropyPseudoLabeler(eta=-1)
    with pytest.raises(ValueError, match='schedule'):
        EntropyPseudoLabeler(schedule='cosine')
    with pytest.raises(ValueError, match='ignore_index'):
        EntropyPseudoLabeler(ignore_index=255.0)
    with pytest.raises(ValueError, match='threshold'):
        ConfidencePseudoLabeler(threshold=1.5)
    with pytest.raises(ValueError, match='weight'):
        ConfidencePseudoLabeler(weight=-0.1)


def test_base_labeler_is_abstract():
    with pytest.raises(TypeError):
        BasePseudoLabeler()


def test_registry_build():
    entropy = MODELS.build(dict(type='EntropyPseudoLabeler'))
    assert isinstance(entropy, EntropyPseudoLabeler)
    assert (entropy.alpha_0, entropy.eta, entropy.adaptive_weight,
            entropy.ignore_index, entropy.schedule) == (0.2, 1.0, True, 255,
                                                        'linear')
    confidence = MODELS.build(
        dict(type='ConfidencePseudoLabeler', threshold=0.9))
    assert isinstance(confidence, ConfidencePseudoLabeler)
    assert confidence.threshold == 0.9
