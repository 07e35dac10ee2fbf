"""RML prototype rectification (Sec. 4.2: Eq. 6, 9, 10-11) and its module."""
import math
import os

import pytest
import torch
import torch.distributed as dist
from mmseg.registry import MODELS

from mmseg_semi.models.pseudo_labelers import PrototypeRectifier
from mmseg_semi.models.utils.prototype_functional import (
    argmax_change_fraction, class_feature_means, ema_update_class_prior,
    ema_update_prototypes, prototype_class_weights, prototype_distances,
    rectify_probabilities)
from helpers import gloo_group, spawn_gloo_workers

E = math.exp(-1.0)
# exp(-sqrt 2): weight factor for a prototype at distance sqrt 2.
E_ROOT2 = math.exp(-math.sqrt(2.0))


def pixels(*vectors):
    """(1, len(vector), 1, N) map whose n-th pixel is ``vectors[n]``."""
    return torch.tensor(vectors, dtype=torch.float32).t().reshape(
        1, len(vectors[0]), 1, len(vectors))


def unit_prototypes():
    """C=3, D=2 prototypes [0, 0], [1, 0], [0, 1]."""
    return torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])


def normalised(*values):
    total = sum(values)
    return torch.tensor([v / total for v in values])


# --------------------------------------------------------------------------
# Functional: batch statistics and the moving average (Eq. 10-11)
# --------------------------------------------------------------------------


def test_class_feature_means_sums_and_counts_per_class():
    feats = pixels([1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0])
    labels = torch.tensor([[[0, 0, 2, 255]]])
    sums, counts = class_feature_means(feats, labels, num_classes=3)
    # Label 255 is outside [0, 3) and therefore ignored.
    assert torch.equal(sums, torch.tensor([[4.0, 6.0], [0.0, 0.0],
                                           [5.0, 6.0]]))
    assert torch.equal(counts, torch.tensor([2.0, 0.0, 1.0]))


def test_class_feature_means_respects_valid_mask():
    feats = pixels([1.0, 2.0], [3.0, 4.0], [5.0, 6.0])
    labels = torch.tensor([[[0, 0, 2]]])
    valid = torch.tensor([[[True, False, True]]])
    sums, counts = class_feature_means(feats, labels, 3, valid)
    assert torch.equal(sums, torch.tensor([[1.0, 2.0], [0.0, 0.0],
                                           [5.0, 6.0]]))
    assert torch.equal(counts, torch.tensor([1.0, 0.0, 1.0]))


def test_class_feature_means_rejects_bad_input():
    feats = pixels([1.0, 2.0])
    with pytest.raises(ValueError, match='labels must be an int64'):
        class_feature_means(feats, torch.zeros(1, 1, 1), 3)
    with pytest.raises(ValueError, match=r'labels must have shape \(1, 1, 1'):
        class_feature_means(feats, torch.zeros(1, 2, 1, dtype=torch.long), 3)
    with pytest.raises(ValueError, match='num_classes'):
        class_feature_means(feats, torch.zeros(1, 1, 1, dtype=torch.long), 0)


def test_ema_update_prototypes_by_hand():
    prototypes = torch.tensor([[0.0, 0.0], [2.0, 2.0], [9.0, 9.0]])
    initialised = torch.tensor([True, True, False])
    batch_means = torch.tensor([[4.0, 4.0], [0.0, 0.0], [1.0, 3.0]])
    present = torch.tensor([True, False, True])
    new, new_init = ema_update_prototypes(prototypes, initialised,
                                          batch_means, present, momentum=0.5)
    # class 0: 0.5 * 0 + 0.5 * 4; class 1 absent: kept; class 2 first seen:
    # takes the batch mean.
    assert torch.equal(new, torch.tensor([[2.0, 2.0], [2.0, 2.0],
                                          [1.0, 3.0]]))
    assert torch.equal(new_init, torch.tensor([True, True, True]))
    # Inputs are not modified.
    assert torch.equal(prototypes[0], torch.tensor([0.0, 0.0]))


def test_ema_update_prototypes_never_seen_class_untouched():
    prototypes = torch.zeros(2, 2)
    initialised = torch.zeros(2, dtype=torch.bool)
    batch_means = torch.tensor([[1.0, 1.0], [float('nan'), 5.0]])
    present = torch.tensor([True, False])
    new, new_init = ema_update_prototypes(prototypes, initialised,
                                          batch_means, present, 0.9999)
    assert torch.equal(new, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(new_init, torch.tensor([True, False]))


def test_ema_update_prototypes_rejects_bad_momentum():
    args = (torch.zeros(2, 2), torch.zeros(2, dtype=torch.bool),
            torch.zeros(2, 2), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match='momentum'):
        ema_update_prototypes(*args, momentum=1.5)


def test_ema_update_class_prior_by_hand():
    prior = torch.zeros(3)
    not_set = torch.zeros(3, dtype=torch.bool)
    is_set = torch.ones(3, dtype=torch.bool)
    first = ema_update_class_prior(prior, torch.tensor([2.0, 1.0, 1.0]),
                                   not_set, 0.5)
    assert torch.allclose(first, torch.tensor([0.5, 0.25, 0.25]))
    second = ema_update_class_prior(first, torch.tensor([0.0, 3.0, 1.0]),
                                    is_set, 0.5)
    assert torch.allclose(second, torch.tensor([0.25, 0.5, 0.25]))
    # A batch without any counted pixel leaves the prior alone.
    assert torch.equal(
        ema_update_class_prior(second, torch.zeros(3), is_set, 0.5), second)


def test_ema_update_class_prior_first_sighting_per_class():
    # Classes 0 and 1 were seen ([0.5, 0.5]); class 2 appears now and class
    # 3 is still unseen. Batch frequencies [1, 1, 2, 0] / 4.
    prior = torch.tensor([0.5, 0.5, 0.0, 0.0])
    initialised = torch.tensor([True, True, False, False])
    new = ema_update_class_prior(prior, torch.tensor([1.0, 1.0, 2.0, 0.0]),
                                 initialised, 0.5)
    # Seen classes average (0.5 * 0.5 + 0.5 * 0.25); class 2 takes its
    # batch frequency, not 0.5 * 0.5; class 3 stays 0.
    assert torch.allclose(new, torch.tensor([0.375, 0.375, 0.5, 0.0]))
    with pytest.raises(ValueError,
                       match=r'initialised must have shape \(4,\)'):
        ema_update_class_prior(prior, torch.ones(4), torch.tensor(True), 0.5)


# --------------------------------------------------------------------------
# Functional: class-wise confidence (Eq. 9) and rectification (Eq. 6)
# --------------------------------------------------------------------------


def test_prototype_distances_by_hand():
    feats = pixels([1.0, 0.0], [3.0, 4.0])
    distances = prototype_distances(feats, unit_prototypes())
    expected = torch.tensor([[1.0, 0.0, math.sqrt(2.0)],
                             [5.0, math.sqrt(20.0), math.sqrt(18.0)]])
    assert torch.allclose(distances[0, :, 0].t(), expected)


def test_class_weights_softmax_of_negative_distances():
    feats = pixels([1.0, 0.0])  # distances [1, 0, sqrt 2]
    weights = prototype_class_weights(feats, unit_prototypes(),
                                      torch.ones(3, dtype=torch.bool))
    assert weights.shape == (1, 3, 1, 1)
    assert torch.allclose(weights.flatten(), normalised(E, 1.0, E_ROOT2))


def test_class_weights_with_prior():
    feats = pixels([1.0, 0.0])
    log_prior = torch.tensor([0.5, 0.25, 0.25]).log()
    weights = prototype_class_weights(feats, unit_prototypes(),
                                      torch.ones(3, dtype=torch.bool),
                                      log_prior)
    assert torch.allclose(weights.flatten(),
                          normalised(0.5 * E, 0.25, 0.25 * E_ROOT2))


def test_class_weights_with_temperature():
    feats = pixels([1.0, 0.0])
    weights = prototype_class_weights(feats, unit_prototypes(),
                                      torch.ones(3, dtype=torch.bool),
                                      temperature=2.0)
    assert torch.allclose(
        weights.flatten(),
        normalised(math.exp(-0.5), 1.0, math.exp(-math.sqrt(2.0) / 2)))


def test_uninitialised_class_gets_zero_weight():
    feats = pixels([1.0, 0.0], [0.0, 1.0])
    initialised = torch.tensor([True, True, False])
    weights = prototype_class_weights(feats, unit_prototypes(), initialised)
    # Pixel 2 sits on the uninitialised prototype 2 and still gets 0 there:
    # its distances to the initialised ones are [1, sqrt 2].
    assert torch.allclose(weights[0, :, 0, 0], normalised(E, 1.0, 0.0))
    assert torch.allclose(weights[0, :, 0, 1], normalised(E, E_ROOT2, 0.0))
    assert torch.equal(weights[:, 2], torch.zeros(1, 1, 2))


def test_no_initialised_prototype_gives_unit_weights():
    feats = pixels([1.0, 0.0], [5.0, -3.0])
    weights = prototype_class_weights(feats, torch.zeros(3, 2),
                                      torch.zeros(3, dtype=torch.bool))
    assert torch.equal(weights, torch.ones(1, 3, 1, 2))


def test_class_weights_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r'prototypes must have shape \(C, 3'):
        prototype_distances(torch.zeros(1, 3, 1, 1), torch.zeros(2, 2))
    with pytest.raises(ValueError, match='initialised must have shape'):
        prototype_class_weights(torch.zeros(1, 2, 1, 1), torch.zeros(3, 2),
                                torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match='temperature'):
        prototype_class_weights(torch.zeros(1, 2, 1, 1), torch.zeros(3, 2),
                                torch.ones(3, dtype=torch.bool),
                                temperature=0.0)


def test_rectify_probabilities_by_hand():
    probs = pixels([0.5, 0.3, 0.2])
    weights = pixels([0.2, 0.2, 0.6])
    rectified = rectify_probabilities(probs, weights)
    # w * p = [0.1, 0.06, 0.12], sum 0.28.
    assert torch.allclose(rectified.flatten(),
                          torch.tensor([0.1, 0.06, 0.12]) / 0.28)
    # Unit weights are the identity.
    assert torch.allclose(
        rectify_probabilities(probs, torch.ones_like(probs)), probs)


def test_rectify_probabilities_keeps_pixel_without_supported_mass():
    probs = pixels([0.0, 1.0, 0.0])
    weights = pixels([0.5, 0.0, 0.5])
    assert torch.equal(rectify_probabilities(probs, weights), probs)


def test_argmax_change_fraction_counts_valid_pixels_only():
    before = pixels([0.6, 0.4], [0.6, 0.4], [0.1, 0.9], [0.2, 0.8])
    after = pixels([0.4, 0.6], [0.7, 0.3], [0.1, 0.9], [0.9, 0.1])
    assert argmax_change_fraction(before, after).item() == pytest.approx(0.5)
    valid = torch.tensor([[[True, True, True, False]]])
    assert argmax_change_fraction(before, after,
                                  valid).item() == pytest.approx(1 / 3)
    nothing = torch.zeros(1, 1, 4, dtype=torch.bool)
    assert argmax_change_fraction(before, after, nothing).item() == 0.0


# --------------------------------------------------------------------------
# PrototypeRectifier module
# --------------------------------------------------------------------------


def seeded_rectifier(**kwargs):
    """Rectifier whose prototypes are exactly [0, 0], [1, 0], [0, 1].

    One update with one pixel per class initialises each prototype from
    the batch; the prior becomes uniform (one pixel of each class).
    """
    rectifier = PrototypeRectifier(
        num_classes=3, feat_channels=2, momentum=0.5, **kwargs)
    feats = pixels([0.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    probs = pixels([0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8])
    rectifier.update(feats, probs)
    return rectifier


def test_rectifier_is_registered():
    rectifier = MODELS.build(
        dict(type='PrototypeRectifier', num_classes=4, feat_channels=8))
    assert isinstance(rectifier, PrototypeRectifier)
    assert rectifier.momentum == 0.9999
    assert rectifier.prototypes.shape == (4, 8)
    # ProDA has no prior; the paper's Eq. 10 takes labeled pixels too.
    assert rectifier.use_prior is False
    assert rectifier.labeled_prototypes is True


def test_rectifier_identity_before_any_update():
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=2)
    probs = pixels([0.5, 0.3, 0.2], [0.1, 0.1, 0.8])
    rectified, changed = rectifier(probs, pixels([9.0, 9.0], [0.0, 0.0]))
    assert torch.allclose(rectified, probs)
    assert changed.item() == 0.0


def test_rectifier_first_update_initialises_prototypes_and_prior():
    rectifier = seeded_rectifier()
    assert torch.equal(rectifier.prototypes, unit_prototypes())
    assert torch.equal(rectifier.prototype_initialised,
                       torch.ones(3, dtype=torch.bool))
    assert torch.allclose(rectifier.class_prior, torch.full((3, ), 1 / 3))


def test_rectifier_flips_argmax_and_reports_changed_fraction():
    rectifier = seeded_rectifier()
    # Both pixels have feature [0, 1] (prototype 2): distances [1, sqrt2, 0].
    feats = pixels([0.0, 1.0], [0.0, 1.0])
    probs = pixels([0.4, 0.35, 0.25], [0.9, 0.05, 0.05])
    rectified, changed = rectifier(probs, feats)
    w = normalised(E, E_ROOT2, 1.0)  # uniform prior
    for index, p in enumerate(([0.4, 0.35, 0.25], [0.9, 0.05, 0.05])):
        expected = torch.tensor(p) * w
        expected = expected / expected.sum()
        assert torch.allclose(rectified[0, :, 0, index], expected)
    # Pixel 0: [0.147, 0.085, 0.25] -> class 2 (was 0); pixel 1 stays 0.
    assert rectified.argmax(dim=1).tolist() == [[[2, 0]]]
    assert changed.item() == pytest.approx(0.5)
    # The flipped pixel is padding: nothing valid changed.
    valid = torch.tensor([[[False, True]]])
    _, changed_valid = rectifier(probs, feats, valid)
    assert changed_valid.item() == 0.0
    labels = rectifier.hard_labels(rectified, valid)
    assert labels.tolist() == [[[255, 0]]]


def test_rectifier_uses_class_prior():
    rectifier = PrototypeRectifier(3, 2, momentum=0.5, use_prior=True)
    # Class 0 twice, classes 1 and 2 once: prior [0.5, 0.25, 0.25].
    feats = pixels([0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    probs = pixels([1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                   [0.0, 0.0, 1.0])
    rectifier.update(feats, probs)
    assert torch.allclose(rectifier.class_prior,
                          torch.tensor([0.5, 0.25, 0.25]))
    p = [0.2, 0.5, 0.3]
    rectified, _ = rectifier(pixels(p), pixels([1.0, 0.0]))
    expected = torch.tensor(p) * normalised(0.5 * E, 0.25, 0.25 * E_ROOT2)
    assert torch.allclose(rectified.flatten(), expected / expected.sum())

    no_prior = PrototypeRectifier(3, 2, momentum=0.5, use_prior=False)
    no_prior.load_state_dict(rectifier.state_dict())
    rectified, _ = no_prior(pixels(p), pixels([1.0, 0.0]))
    expected = torch.tensor(p) * normalised(E, 1.0, E_ROOT2)
    assert torch.allclose(rectified.flatten(), expected / expected.sum())


def test_prior_of_a_late_class_starts_at_its_frequency():
    """A class absent from the first batch is not penalised by the prior
    once it appears: pi_k is its first batch's frequency, not (1 - lambda)
    times it (log 1e-4 = -9.2 nats at lambda = 0.9999)."""
    momentum = 0.9999
    rectifier = PrototypeRectifier(3, 2, momentum=momentum, use_prior=True)
    one_hot = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    # Batch 1: classes 0 and 1 at their unit prototypes, class 2 absent.
    rectifier.update(pixels([0.0, 0.0], [1.0, 0.0]),
                     pixels(one_hot[0], one_hot[1]))
    assert torch.allclose(rectifier.class_prior,
                          torch.tensor([0.5, 0.5, 0.0]))
    # Batch 2: one pixel each of classes 0 and 1, two of class 2.
    rectifier.update(
        pixels([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]),
        pixels(one_hot[0], one_hot[1], one_hot[2], one_hot[2]))
    assert torch.equal(rectifier.prototypes, unit_prototypes())
    seen = momentum * 0.5 + (1 - momentum) * 0.25
    assert torch.allclose(rectifier.class_prior,
                          torch.tensor([seen, seen, 0.5]))

    # A pixel on class 2's prototype that the teacher gives to class 2 keeps
    # class 2: w * p = [0.3 * pi0 e^-1, 0.3 * pi1 e^-sqrt2, 0.4 * pi2].
    p = pixels([0.3, 0.3, 0.4])
    on_prototype = pixels([0.0, 1.0])
    rectified, changed = rectifier(p, on_prototype)
    expected = torch.tensor([0.3 * seen * E, 0.3 * seen * E_ROOT2, 0.4 * 0.5])
    assert torch.allclose(rectified.flatten(), expected / expected.sum())
    assert rectified.argmax(dim=1).item() == 2
    assert changed.item() == 0.0
    # Initialised from the first batch, pi2 would be (1 - lambda) * 0.5 and
    # the same pixel would be relabelled class 0.
    old_prior = torch.tensor([seen, seen, (1 - momentum) * 0.5])
    weights = prototype_class_weights(on_prototype, unit_prototypes(),
                                      torch.ones(3, dtype=torch.bool),
                                      old_prior.log())
    assert rectify_probabilities(p, weights).argmax(dim=1).item() == 0


def test_rectifier_upsamples_weights_bilinearly():
    rectifier = seeded_rectifier(use_prior=False)
    # Features (1, 2, 1, 2) -> weights w0 (feature [1, 0]) and w1 ([0, 1]);
    # probabilities (1, 3, 1, 4): align_corners=False maps output columns
    # to source positions -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1]).
    feats = pixels([1.0, 0.0], [0.0, 1.0])
    w0 = normalised(E, 1.0, E_ROOT2)
    w1 = normalised(E, E_ROOT2, 1.0)
    column_weights = [w0, 0.75 * w0 + 0.25 * w1, 0.25 * w0 + 0.75 * w1, w1]
    p = torch.tensor([0.3, 0.3, 0.4])
    probs = p.view(1, 3, 1, 1).expand(1, 3, 1, 4)
    rectified, _ = rectifier(probs, feats)
    for column, w in enumerate(column_weights):
        expected = p * w / (p * w).sum()
        assert torch.allclose(rectified[0, :, 0, column], expected)


def test_rectifier_update_ema_and_unseen_class():
    rectifier = PrototypeRectifier(num_classes=4, feat_channels=2,
                                   momentum=0.5)
    rectifier.update(
        pixels([2.0, 0.0], [4.0, 0.0], [0.0, 6.0]),
        pixels([0.7, 0.1, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1],
               [0.1, 0.7, 0.1, 0.1]))
    # First batch: class 0 mean [3, 0], class 1 [0, 6]; classes 2, 3 unseen.
    expected = torch.tensor([[3.0, 0.0], [0.0, 6.0], [0.0, 0.0], [0.0, 0.0]])
    assert torch.equal(rectifier.prototypes, expected)
    rectifier.update(
        pixels([1.0, 1.0], [5.0, 5.0]),
        pixels([0.9, 0.0, 0.1, 0.0], [0.0, 0.1, 0.9, 0.0]))
    # Class 0: 0.5 * [3, 0] + 0.5 * [1, 1]; class 1 absent: kept;
    # class 2 first seen: [5, 5]; class 3 never seen: zero and uninitialised.
    expected = torch.tensor([[2.0, 0.5], [0.0, 6.0], [5.0, 5.0], [0.0, 0.0]])
    assert torch.equal(rectifier.prototypes, expected)
    assert rectifier.prototype_initialised.tolist() == [
        True, True, True, False
    ]
    # Prior: 0.5 * [2/3, 1/3] + 0.5 * [1/2, 0] for the classes seen
    # before; class 2, first seen, takes its frequency 1/2; class 3: 0.
    assert torch.allclose(rectifier.class_prior,
                          torch.tensor([7 / 12, 1 / 6, 1 / 2, 0.0]))
    # The never-seen class is excluded from the weights: even a teacher that
    # is sure of class 3 is sent to the initialised classes it allows.
    rectified, _ = rectifier(
        pixels([0.1, 0.1, 0.1, 0.7]), pixels([0.0, 0.0]))
    assert rectified[0, 3].item() == 0.0
    assert rectified.sum().item() == pytest.approx(1.0)


def test_rectifier_update_resizes_probs_and_valid_mask():
    rectifier = PrototypeRectifier(num_classes=2, feat_channels=1,
                                   momentum=0.5)
    # Features at 1x2, probabilities and mask at 2x4: each feature pixel
    # covers a 2x2 block. Bilinear down-sampling of a constant block keeps
    # its value; the nearest-neighbour mask reads each block's top-left.
    feats = torch.tensor([[[[1.0, 7.0]]]])
    block = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1).expand(1, 2, 2, 4)
    valid = torch.ones(1, 2, 4, dtype=torch.bool)
    rectifier.update(feats, block, valid)
    # Both feature pixels are class 0: mean of 1 and 7.
    assert torch.equal(rectifier.prototypes, torch.tensor([[4.0], [0.0]]))

    padded = valid.clone()
    padded[:, :, 2:] = False  # right half is padding
    rectifier = PrototypeRectifier(num_classes=2, feat_channels=1,
                                   momentum=0.5)
    rectifier.update(feats, block, padded)
    # The padded feature pixel (value 7) does not contribute.
    assert torch.equal(rectifier.prototypes, torch.tensor([[1.0], [0.0]]))


def test_rectifier_update_from_labels_skips_ignore_index():
    rectifier = PrototypeRectifier(num_classes=2, feat_channels=1,
                                   momentum=0.5, ignore_index=255)
    feats = torch.tensor([[[[1.0, 3.0, 8.0]]]])
    labels = torch.tensor([[[1, 1, 255]]])
    rectifier.update_from_labels(feats, labels)
    assert torch.equal(rectifier.prototypes, torch.tensor([[0.0], [2.0]]))
    assert rectifier.prototype_initialised.tolist() == [False, True]


def test_labeled_and_unlabeled_pixels_make_one_centroid(monkeypatch):
    """Eq. 10: one batch centroid per class over labeled pixels (ground
    truth) and unlabeled ones (teacher arg-max), one all-reduce."""
    reduced = []
    original = PrototypeRectifier._all_reduce_class_statistics

    def counting(sums, counts):
        reduced.append(counts.clone())
        return original(sums, counts)

    monkeypatch.setattr(PrototypeRectifier, '_all_reduce_class_statistics',
                        staticmethod(counting))
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=1,
                                   momentum=0.5)
    # Unlabeled: features 1, 3 (class 0) and 10 (class 1).
    feats = torch.tensor([[[[1.0, 3.0, 10.0]]]])
    probs = pixels([0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.9, 0.0])
    # Labeled at 2x the feature resolution, read nearest (top-left of each
    # 2x2 block): classes 0, 2, ignored, with features 5, 7, 100.
    labeled_feats = torch.tensor([[[[5.0, 7.0, 100.0]]]])
    labels = torch.tensor([[0, 0, 2, 2, 255, 255],
                           [0, 0, 2, 2, 255, 255]]).unsqueeze(0)
    rectifier.update(feats, probs, None, labeled_feats, labels)
    # Class 0: mean of 1, 3 (unlabeled) and 5 (labeled); class 1: 10;
    # class 2 (labeled only): 7. The ignored pixel (100) is left out.
    assert torch.equal(rectifier.prototypes,
                       torch.tensor([[3.0], [10.0], [7.0]]))
    assert rectifier.prototype_initialised.all()
    assert torch.allclose(rectifier.class_prior,
                          torch.tensor([3 / 5, 1 / 5, 1 / 5]))
    assert [c.tolist() for c in reduced] == [[3.0, 1.0, 1.0]]

    # A second step: one moving-average step over both sets' centroid.
    rectifier.update(torch.tensor([[[[7.0]]]]), pixels([1.0, 0.0, 0.0]),
                     None, torch.tensor([[[[9.0]]]]),
                     torch.tensor([[[0]]]))
    # Class 0 batch mean (7 + 9) / 2 = 8: 0.5 * 3 + 0.5 * 8.
    assert torch.equal(rectifier.prototypes,
                       torch.tensor([[5.5], [10.0], [7.0]]))
    assert len(reduced) == 2


def test_labeled_pixels_ignored_without_labeled_prototypes():
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=1,
                                   momentum=0.5, labeled_prototypes=False)
    feats = torch.tensor([[[[1.0, 3.0]]]])
    probs = pixels([0.9, 0.1, 0.0], [0.9, 0.1, 0.0])
    rectifier.update(feats, probs, None, torch.tensor([[[[5.0, 7.0]]]]),
                     torch.tensor([[[0, 2]]]))
    assert torch.equal(rectifier.prototypes,
                       torch.tensor([[2.0], [0.0], [0.0]]))
    assert rectifier.prototype_initialised.tolist() == [True, False, False]
    assert torch.equal(rectifier.class_prior, torch.tensor([1.0, 0.0, 0.0]))


def test_rectifier_state_dict_round_trip(tmp_path):
    rectifier = PrototypeRectifier(num_classes=4, feat_channels=2,
                                   momentum=0.5)
    rectifier.update(
        pixels([2.0, 0.0], [0.0, 6.0]),
        pixels([0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1]))
    assert set(rectifier.state_dict()) == {
        'prototypes', 'prototype_initialised', 'class_prior'
    }
    path = tmp_path / 'rectifier.pth'
    torch.save(rectifier.state_dict(), path)
    restored = PrototypeRectifier(num_classes=4, feat_channels=2,
                                  momentum=0.5)
    restored.load_state_dict(torch.load(path))
    assert torch.equal(restored.prototypes, rectifier.prototypes)
    assert restored.prototype_initialised.dtype == torch.bool
    assert restored.prototype_initialised.tolist() == [
        True, False, True, False
    ]
    assert torch.equal(restored.class_prior, rectifier.class_prior)
    probs = pixels([0.3, 0.3, 0.2, 0.2])
    feats = pixels([1.0, 1.0])
    assert torch.equal(restored(probs, feats)[0], rectifier(probs, feats)[0])


def test_rectifier_outputs_carry_no_gradient():
    rectifier = seeded_rectifier()
    feats = pixels([0.0, 1.0]).requires_grad_()
    logits = pixels([1.0, 0.5, 0.2]).requires_grad_()
    rectified, changed = rectifier(logits.softmax(dim=1), feats)
    assert not rectified.requires_grad
    assert not changed.requires_grad
    rectifier.update(feats, logits.softmax(dim=1))
    assert not rectifier.prototypes.requires_grad
    assert feats.grad is None


def test_rectifier_half_precision_input_is_computed_in_float32():
    rectifier = PrototypeRectifier(num_classes=2, feat_channels=2,
                                   momentum=0.5)
    # |f|^2 = 2 * 300^2 = 180000 overflows float16 (max 65504).
    feats = pixels([300.0, 300.0], [-300.0, 300.0]).half()
    probs = pixels([0.9, 0.1], [0.2, 0.8]).half()
    rectifier.update(feats, probs)
    assert torch.equal(rectifier.prototypes,
                       torch.tensor([[300.0, 300.0], [-300.0, 300.0]]))
    rectified, changed = rectifier(probs, feats)
    assert rectified.dtype == torch.float32
    assert torch.isfinite(rectified).all()
    # Each pixel sits on its own class's prototype, 600 from the other one,
    # so the rectified distribution is one-hot on the teacher's choice.
    assert torch.allclose(rectified[0, :, 0].t(), torch.eye(2))
    assert changed.item() == 0.0


def test_float32_math_under_autocast():
    feats = torch.randn(2, 8, 3, 3) * 50
    prototypes = torch.randn(4, 8) * 50
    labels = torch.randint(0, 4, (2, 3, 3))
    expected_distances = prototype_distances(feats, prototypes)
    expected_sums, _ = class_feature_means(feats, labels, 4)
    # CPU autocast would run matmul/einsum in bfloat16 (8-bit mantissa).
    with torch.autocast('cpu', dtype=torch.bfloat16):
        distances = prototype_distances(feats, prototypes)
        sums, _ = class_feature_means(feats, labels, 4)
    assert distances.dtype == sums.dtype == torch.float32
    assert torch.equal(distances, expected_distances)
    assert torch.equal(sums, expected_sums)


def test_rectifier_rejects_bad_arguments():
    with pytest.raises(ValueError, match='num_classes'):
        PrototypeRectifier(num_classes=0, feat_channels=2)
    with pytest.raises(ValueError, match='momentum'):
        PrototypeRectifier(num_classes=2, feat_channels=2, momentum=1.1)
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=2)
    with pytest.raises(ValueError, match='feat_channels=2'):
        rectifier(torch.rand(1, 3, 2, 2), torch.rand(1, 5, 1, 1))
    with pytest.raises(ValueError, match='num_classes=3'):
        rectifier(torch.rand(1, 4, 2, 2), torch.rand(1, 2, 1, 1))
    with pytest.raises(ValueError, match='valid_mask must be a bool'):
        rectifier(torch.rand(1, 3, 2, 2), torch.rand(1, 2, 1, 1),
                  torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match='labels must be an int64'):
        rectifier.update_from_labels(torch.rand(1, 2, 1, 1),
                                     torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match='labels must be an int64'):
        rectifier.update(torch.rand(1, 2, 1, 1), torch.rand(1, 3, 2, 2),
                         None, torch.rand(2, 2, 1, 1),
                         torch.ones(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match='go together'):
        rectifier.update(torch.rand(1, 2, 1, 1), torch.rand(1, 3, 2, 2),
                         None, torch.rand(1, 2, 1, 1))
    with pytest.raises(ValueError, match='use_prior must be True or False'):
        PrototypeRectifier(num_classes=2, feat_channels=2, use_prior=1)
    with pytest.raises(ValueError,
                       match='labeled_prototypes must be True or False'):
        PrototypeRectifier(num_classes=2, feat_channels=2,
                           labeled_prototypes='yes')


# --------------------------------------------------------------------------
# Distributed: one all-reduce, identical prototypes on every rank
# --------------------------------------------------------------------------


def _ddp_worker(rank, world_size, init_method, out_dir):
    with gloo_group(rank, world_size, init_method):
        calls = []
        all_reduce = dist.all_reduce

        def counting_all_reduce(tensor, *args, **kwargs):
            calls.append(tuple(tensor.shape))
            return all_reduce(tensor, *args, **kwargs)

        dist.all_reduce = counting_all_reduce
        rectifier = PrototypeRectifier(num_classes=3, feat_channels=2,
                                       momentum=0.5)
        if rank == 0:  # two pixels of class 0
            feats = pixels([1.0, 0.0], [3.0, 0.0])
            probs = pixels([0.9, 0.1, 0.0], [0.9, 0.1, 0.0])
        else:  # one pixel of class 0, one of class 1
            feats = pixels([5.0, 3.0], [0.0, 4.0])
            probs = pixels([0.9, 0.1, 0.0], [0.1, 0.9, 0.0])
        rectifier.update(feats, probs)
        torch.save({'state': rectifier.state_dict(), 'calls': calls},
                   os.path.join(out_dir, f'rank{rank}.pth'))


def test_rectifier_update_all_reduces_once_across_ranks(tmp_path):
    spawn_gloo_workers(_ddp_worker, str(tmp_path))
    results = [torch.load(tmp_path / f'rank{r}.pth') for r in range(2)]
    for result in results:
        # One collective of the packed (C, D + 1) statistics.
        assert result['calls'] == [(3, 3)]
        state = result['state']
        # Global class-0 mean of [1, 0], [3, 0], [5, 3]; class 1 from rank 1.
        assert torch.allclose(
            state['prototypes'],
            torch.tensor([[3.0, 1.0], [0.0, 4.0], [0.0, 0.0]]))
        assert state['prototype_initialised'].tolist() == [True, True, False]
        assert torch.allclose(state['class_prior'],
                              torch.tensor([0.75, 0.25, 0.0]))
