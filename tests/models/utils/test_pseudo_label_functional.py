"""Pseudo-label math (U2PL Eq. 3, 5-8) of
models/utils/pseudo_label_functional.py: pixel entropy, the entropy
quantile, the alpha schedule, the adaptive weight and the pseudo-label
cross-entropy."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import entropy_of, probs_1x5
from mmseg_semi.models.utils.pseudo_label_functional import (
    adaptive_unsup_weight, class_argmax, dynamic_partition_alpha,
    entropy_quantile_threshold, pixel_entropy, pseudo_label_cross_entropy)

IGNORE = 255


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
