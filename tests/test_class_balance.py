"""Class-balanced pseudo-labels: distribution alignment, class-wise
quantiles, the class-share monitor and the collapse guard, on hand-built
probability maps with one dominant class."""
import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub

from mmseg_semi.engine.hooks import ClassCollapseGuardHook
from mmseg_semi.models.pseudo_labelers import (ClassShareAlignment,
                                               ConfidencePseudoLabeler,
                                               DistributionAlignment,
                                               EntropyPseudoLabeler,
                                               PrototypeRectifier)
from mmseg_semi.models.utils.segmentor_forward import rectified_pseudo_labels
from mmseg_semi.models.utils.class_balance_functional import (
    align_distribution, argmax_class_counts, class_pixel_counts,
    class_probability_sums, classwise_entropy_thresholds, ema_class_shares,
    scale_class_probabilities, share_controller_step)
from mmseg_semi.models.utils.class_share_monitor import ClassShareMonitor
from mmseg_semi.models.utils.pseudo_label_functional import pixel_entropy

IGNORE = 255


def dominant_map(seed: int = 0, size=(2, 40, 50), dominant_p=0.95,
                 rare_p=0.6, rare_fraction=0.05):
    """(B, 3, H, W) probabilities: class 0 at ~``dominant_p`` on most pixels,
    class 2 (rare) at ~``rare_p`` on ``rare_fraction`` of them; a little
    noise so that entropies are not tied. Returns probs and the rare mask."""
    gen = torch.Generator().manual_seed(seed)
    batch, height, width = size
    rare = torch.rand(size, generator=gen) < rare_fraction
    top = torch.where(rare, torch.tensor(rare_p), torch.tensor(dominant_p))
    top = top + 0.01 * torch.rand(size, generator=gen)
    rest = (1 - top) / 2
    probs = torch.stack([
        torch.where(rare, rest, top), rest,
        torch.where(rare, top, rest)
    ], dim=1)
    return probs, rare


# ------------------------------------------------------------- functional
def test_class_pixel_counts_equals_bincount_without_ignored_and_masked():
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 5, (3, 7, 9), generator=gen)
    labels[0, :2] = IGNORE
    mask = torch.rand(labels.shape, generator=gen) > 0.3
    counts = class_pixel_counts(labels, 5, mask)
    kept = labels[mask & (labels != IGNORE)]
    expected = np.bincount(kept.numpy(), minlength=5)
    np.testing.assert_array_equal(counts.numpy(), expected)
    assert counts.dtype == torch.float32


def test_class_probability_sums_over_valid_pixels():
    probs = torch.tensor([[0.7, 0.2], [0.3, 0.8]]).view(1, 2, 1, 2)
    valid = torch.tensor([[[True, False]]])
    np.testing.assert_allclose(
        class_probability_sums(probs, valid).numpy(), [0.7, 0.3])


def test_ema_class_shares_starts_at_first_batch_then_averages():
    running = torch.zeros(3)
    first = ema_class_shares(running, torch.tensor([2., 2., 0.]), 0.9,
                             torch.tensor(False))
    np.testing.assert_allclose(first.numpy(), [0.5, 0.5, 0.0])
    second = ema_class_shares(first, torch.tensor([0., 0., 4.]), 0.9,
                              torch.tensor(True))
    np.testing.assert_allclose(second.numpy(), [0.45, 0.45, 0.1], atol=1e-7)
    # An empty batch changes nothing.
    third = ema_class_shares(second, torch.zeros(3), 0.9, torch.tensor(True))
    np.testing.assert_array_equal(third.numpy(), second.numpy())


def test_align_distribution_hand_computed():
    # One pixel p = (0.8, 0.2); labeled shares (0.5, 0.5); the teacher's
    # mean prediction (0.8, 0.2): factors (0.625, 2.5) -> (0.5, 0.5) raw
    # -> normalised (0.5, 0.5).
    probs = torch.tensor([0.8, 0.2]).view(1, 2, 1, 1)
    aligned = align_distribution(probs, torch.tensor([0.5, 0.5]),
                                 torch.tensor([0.8, 0.2]))
    np.testing.assert_allclose(aligned.flatten().numpy(), [0.5, 0.5],
                               atol=1e-6)
    # A second pixel (0.6, 0.4): (0.375, 1.0) / 1.375.
    probs = torch.tensor([0.6, 0.4]).view(1, 2, 1, 1)
    aligned = align_distribution(probs, torch.tensor([0.5, 0.5]),
                                 torch.tensor([0.8, 0.2]))
    np.testing.assert_allclose(aligned.flatten().numpy(),
                               [0.375 / 1.375, 1 / 1.375], atol=1e-6)


def test_align_distribution_bounds_the_factor_of_an_unpredicted_class():
    probs = torch.tensor([0.98, 0.01, 0.01]).view(1, 3, 1, 1)
    aligned = align_distribution(probs, torch.tensor([0.5, 0.25, 0.25]),
                                 torch.tensor([1.0, 0.0, 0.0]),
                                 max_ratio=10.0)
    # Factors clipped to (0.5, 10, 10): (0.49, 0.1, 0.1) / 0.69.
    np.testing.assert_allclose(aligned.flatten().numpy(),
                               np.array([0.49, 0.1, 0.1]) / 0.69, atol=1e-6)
    with pytest.raises(ValueError, match='max_ratio'):
        align_distribution(probs, torch.ones(3), torch.ones(3), max_ratio=0.5)


def test_classwise_thresholds_equal_numpy_percentile_per_class():
    gen = torch.Generator().manual_seed(3)
    probs = torch.rand(2, 4, 6, 7, generator=gen).softmax(dim=1)
    entropy = pixel_entropy(probs)
    classes = probs.argmax(dim=1)
    valid = torch.rand(2, 6, 7, generator=gen) > 0.2
    alpha = 0.3
    thresholds = classwise_entropy_thresholds(entropy, classes, valid, alpha,
                                              num_classes=5)
    for c in range(5):
        values = entropy[valid & (classes == c)].double().numpy()
        if values.size == 0:
            assert thresholds[c] == 0
        else:
            np.testing.assert_allclose(
                thresholds[c].item(),
                np.percentile(values, 100 * (1 - alpha)), rtol=1e-6)
    inf = classwise_entropy_thresholds(entropy, classes, valid, 0.0, 5)
    assert torch.isinf(inf).all()


def test_batch_wide_quantile_drops_the_rare_class_classwise_keeps_it():
    """The issue's map: class 0 at p=0.95 on 95% of the pixels, a rare class
    at p=0.6 on 5%; alpha=0.2 (mid-training of alpha_0 = 0.4)."""
    probs, rare = dominant_map()
    batch_wide = EntropyPseudoLabeler(
        alpha_0=0.2, schedule='constant', class_wise=False)(probs)
    class_wise = EntropyPseudoLabeler(alpha_0=0.2, schedule='constant')(probs)
    assert batch_wide.reliable[rare].float().mean() == 0
    kept_rare = class_wise.reliable[rare].float().mean().item()
    kept_dominant = class_wise.reliable[~rare].float().mean().item()
    assert kept_rare == pytest.approx(0.8, abs=0.03)
    assert kept_dominant == pytest.approx(0.8, abs=0.01)
    assert (class_wise.labels[class_wise.reliable & rare] == 2).all()


def test_distribution_alignment_restores_a_class_the_teacher_underpredicts():
    """The labeled data has 20% of class 2; the teacher predicts it on 5%
    of the pixels at p=0.6, and under-confidently (p=0.45, arg-max class 0)
    on another 15%. Alignment moves those pixels to class 2."""
    probs, rare = dominant_map(rare_fraction=0.05)
    gen = torch.Generator().manual_seed(7)
    hidden = (~rare) & (torch.rand(rare.shape, generator=gen) < 0.16)
    jitter = 0.02 * torch.rand(int(hidden.sum()), generator=gen)
    probs[:, 0][hidden] = 0.5 - jitter
    probs[:, 1][hidden] = 0.05
    probs[:, 2][hidden] = 0.45 + jitter
    alignment = DistributionAlignment(num_classes=3, momentum=0.0)
    alignment.update_labeled(torch.tensor([75., 5., 20.]))
    valid = torch.ones_like(rare)
    aligned = alignment(probs, valid)
    raw_share = (probs.argmax(1) == 2).float().mean().item()
    aligned_share = (aligned.argmax(1) == 2).float().mean().item()
    assert raw_share < 0.07
    assert aligned_share > 0.18
    torch.testing.assert_close(aligned.sum(1), torch.ones_like(rare).float())
    # The whole chain: aligned, then class-wise quantiles; the rare class
    # keeps reliable pixels in proportion to its labeled share.
    # Before any labeled batch the probabilities pass unchanged.
    pseudo = rectified_pseudo_labels(
        EntropyPseudoLabeler(alpha_0=0.2, schedule='constant'), None, probs,
        None, valid, (0, 1), DistributionAlignment(3, momentum=0.0))
    share = (pseudo.labels == 2).sum() / pseudo.reliable.sum()
    assert share.item() < 0.07
    balance = DistributionAlignment(3, momentum=0.0)
    balance.update_labeled(torch.tensor([75., 5., 20.]))
    pseudo = rectified_pseudo_labels(
        EntropyPseudoLabeler(alpha_0=0.2, schedule='constant'), None, probs,
        None, valid, (0, 1), balance)
    share = (pseudo.labels == 2).sum() / pseudo.reliable.sum()
    assert share.item() > 0.15


def test_alignment_follows_the_rectifier():
    """The rectifier's prototype weights shift the class distribution; the
    alignment applied after them restores the labeled shares, and the
    prototypes learn from the raw softmax."""
    gen = torch.Generator().manual_seed(3)
    labels = torch.multinomial(torch.tensor([0.6, 0.2, 0.2]), 2 * 30 * 30,
                               replacement=True, generator=gen)
    logits = 0.6 * torch.randn(2, 3, 30, 30, generator=gen)
    logits += 1.5 * F.one_hot(labels.view(2, 30, 30), 3).permute(0, 3, 1, 2)
    probs = logits.softmax(dim=1)
    valid = torch.ones(2, 30, 30, dtype=torch.bool)
    # Every pixel's feature lies on class 1's prototype: w favours class 1.
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=2)
    rectifier.prototypes.copy_(torch.tensor([[0., 0.], [1., 0.], [0., 1.]]))
    rectifier.prototype_initialised.fill_(True)
    feats = torch.tensor([1., 0.]).view(1, 2, 1, 1).expand(2, 2, 30, 30)
    labeler = ConfidencePseudoLabeler(threshold=0.0)

    def class1_share(class_balance):
        prototypes = rectifier.prototypes.clone()
        pseudo = rectified_pseudo_labels(labeler, rectifier, probs, feats,
                                         valid, (0, 1), class_balance)
        rectifier.prototypes.copy_(prototypes)
        return (pseudo.labels == 1).float().mean().item()

    raw_share = (probs.argmax(1) == 1).float().mean().item()
    assert 0.15 < raw_share < 0.25
    assert class1_share(None) > 0.45
    balance = DistributionAlignment(3, momentum=0.0)
    balance.update_labeled(torch.tensor([60., 20., 20.]))
    assert abs(class1_share(balance) - raw_share) < 0.05
    # update() saw the raw arg-max: every pixel's feature is (1, 0), so the
    # prototype of each class the raw arg-max predicts moves towards it.
    rectifier.update(feats, probs, valid)
    expected = rectifier.prototypes.clone()
    rectifier.prototypes.copy_(torch.tensor([[0., 0.], [1., 0.], [0., 1.]]))
    rectified_pseudo_labels(labeler, rectifier, probs, feats, valid, (0, 1),
                            balance)
    torch.testing.assert_close(rectifier.prototypes, expected)


def test_distribution_alignment_divides_out_class_weights():
    """A teacher trained with class weights c predicts q ~ c p; its running
    mean carries the same factor, so alignment returns p's arg-max."""
    gen = torch.Generator().manual_seed(5)
    true = torch.rand(4, 3, 8, 8, generator=gen).softmax(dim=1) ** 3
    true = true / true.sum(1, keepdim=True)
    weights = torch.tensor([0.2, 1.0, 5.0]).view(1, 3, 1, 1)
    biased = true * weights
    biased = biased / biased.sum(1, keepdim=True)
    labeled = true.mean(dim=(0, 2, 3))
    alignment = DistributionAlignment(3, momentum=0.0, max_ratio=100.0)
    alignment.update_labeled(labeled * 1000)
    aligned = alignment(biased, torch.ones(4, 8, 8, dtype=torch.bool))
    agree_raw = (biased.argmax(1) == true.argmax(1)).float().mean()
    agree_aligned = (aligned.argmax(1) == true.argmax(1)).float().mean()
    # Weights spanning 25x: the raw arg-max agrees with p's on 45% of the
    # pixels (class 0 is never predicted), the aligned one on 83%.
    assert agree_raw < 0.5
    assert agree_aligned > 0.8


def test_distribution_alignment_state_is_saved_and_checked():
    alignment = DistributionAlignment(num_classes=3)
    assert set(alignment.state_dict()) == {
        'labeled_share', 'teacher_share', 'labeled_initialised',
        'teacher_initialised'
    }
    alignment.update_labeled(torch.tensor([1., 1., 2.]))
    alignment(torch.full((1, 3, 2, 2), 1 / 3), torch.ones(1, 2, 2).bool())
    restored = DistributionAlignment(num_classes=3)
    restored.load_state_dict(alignment.state_dict())
    torch.testing.assert_close(restored.labeled_share,
                               torch.tensor([0.25, 0.25, 0.5]))
    assert bool(restored.teacher_initialised)
    with pytest.raises(ValueError, match='3 classes'):
        alignment(torch.full((1, 4, 2, 2), 0.25), torch.ones(1, 2, 2).bool())
    for kwargs, key in ((dict(num_classes=0), 'num_classes'),
                        (dict(num_classes=3, momentum=1.0), 'momentum'),
                        (dict(num_classes=3, max_ratio=0.5), 'max_ratio')):
        with pytest.raises(ValueError, match=key):
            DistributionAlignment(**kwargs)


def test_share_controller_step_hand_computed():
    step = share_controller_step(
        torch.zeros(3), torch.tensor([0.5, 0.25, 0.25]),
        torch.tensor([0.25, 0.5, 0.25]), rate=0.1)
    log2 = math.log(2)
    torch.testing.assert_close(step, torch.tensor([0.1 * log2, -0.1 * log2,
                                                   0.0]))
    # A class never measured moves by at most ``rate`` (error clipped to 1);
    # the factors stay within [1 / max_ratio, max_ratio].
    step = share_controller_step(
        torch.tensor([0.0, 0.68, -0.68]), torch.tensor([0.5, 0.4, 0.1]),
        torch.tensor([0.0, 0.1, 0.9]), rate=0.1, max_ratio=2.0)
    torch.testing.assert_close(step, torch.tensor([0.1, log2, -log2]))
    probs = torch.tensor([0.5, 0.25, 0.25]).view(1, 3, 1, 1)
    scaled = scale_class_probabilities(probs, torch.tensor([0.0, log2, 0.0]))
    torch.testing.assert_close(scaled.flatten(),
                               torch.tensor([0.4, 0.4, 0.2]))
    valid = torch.tensor([[[True, True, False]]])
    counts = argmax_class_counts(
        torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7],
                      [0.0, 1.0, 0.0]]).t().reshape(1, 3, 1, 3), valid)
    torch.testing.assert_close(counts, torch.tensor([1.0, 0.0, 1.0]))


def class_weighted_teacher_batch(gen: torch.Generator):
    """A batch of true posteriors p (class 0 most frequent) and the
    prediction ``q ~ c p`` of a teacher trained with class weights
    c = (0.2, 1, 5)."""
    logits = 1.5 * torch.randn(4, 3, 16, 16, generator=gen)
    logits[:, 0] += 1.0
    true = logits.softmax(dim=1)
    biased = true * torch.tensor([0.2, 1.0, 5.0]).view(1, 3, 1, 1)
    return true, biased / biased.sum(dim=1, keepdim=True)


def test_class_share_alignment_matches_the_labeled_argmax_shares():
    """The class-weighted teacher is the arg-max of class 2 on 70% of the
    pixels, whose true share is 24%. Mean-probability alignment leaves it at
    39%; the share controller brings every class within 0.02 of its labeled
    share."""
    gen = torch.Generator().manual_seed(0)
    true = torch.cat([class_weighted_teacher_batch(gen)[0]
                      for _ in range(50)])
    labeled = class_pixel_counts(true.argmax(dim=1), 3)
    target = labeled / labeled.sum()
    valid = torch.ones(4, 16, 16, dtype=torch.bool)

    def shares_after_warm_up(alignment):
        alignment.update_labeled(labeled)
        gen = torch.Generator().manual_seed(1)
        for _ in range(150):
            alignment(class_weighted_teacher_batch(gen)[1], valid)
        counts = sum(
            argmax_class_counts(
                alignment(class_weighted_teacher_batch(gen)[1], valid), valid)
            for _ in range(20))
        return counts / counts.sum()

    raw = argmax_class_counts(class_weighted_teacher_batch(gen)[1], valid)
    assert raw[2] / raw.sum() > 0.6
    mean_aligned = shares_after_warm_up(DistributionAlignment(3, 0.0))
    assert mean_aligned[2] - target[2] > 0.1
    controlled = shares_after_warm_up(ClassShareAlignment(3, 0.0))
    assert (controlled - target).abs().max() < 0.02


def test_class_share_alignment_keeps_the_rare_class_reliable():
    """The dominant map (rare class at p=0.6 on 5% of the pixels, 20% of
    the labeled ones, hidden under class 0 on 16% more): after a few dozen
    batches the class-wise entropy labeler's reliable pixels are about 20%
    rare-class, as the labeled data. (Class 1 is in neither the map nor the
    labeled data; a class the teacher never predicts but the labeled data
    has would be lifted up to ``max_ratio`` and take the pixels with the
    smallest margins.)"""
    probs, rare = dominant_map()
    gen = torch.Generator().manual_seed(7)
    hidden = (~rare) & (torch.rand(rare.shape, generator=gen) < 0.16)
    jitter = 0.02 * torch.rand(int(hidden.sum()), generator=gen)
    probs[:, 0][hidden] = 0.55 - jitter
    probs[:, 1][hidden] = 0.05
    probs[:, 2][hidden] = 0.40 + jitter
    valid = torch.ones_like(rare)
    balance = ClassShareAlignment(3, momentum=0.0)
    labeler = EntropyPseudoLabeler(alpha_0=0.2, schedule='constant')
    before = rectified_pseudo_labels(labeler, None, probs, None, valid,
                                     (0, 1), balance)
    assert ((before.labels == 2).sum() / before.reliable.sum()) < 0.07
    balance.update_labeled(torch.tensor([80., 0., 20.]))
    for _ in range(80):
        pseudo = rectified_pseudo_labels(labeler, None, probs, None, valid,
                                         (0, 1), balance)
    share = (pseudo.labels == 2).sum() / pseudo.reliable.sum()
    assert 0.15 < share.item() < 0.25
    assert balance.log_factor[2] > 0.5


def test_class_share_alignment_state_is_saved_and_checked():
    balance = ClassShareAlignment(num_classes=3)
    assert 'log_factor' in balance.state_dict()
    balance.update_labeled(torch.tensor([1., 1., 2.]))
    probs = torch.tensor([0.6, 0.3, 0.1]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    balance(probs, torch.ones(1, 2, 2).bool())
    assert balance.log_factor[2] > 0 > balance.log_factor[0]
    restored = ClassShareAlignment(num_classes=3)
    restored.load_state_dict(balance.state_dict())
    torch.testing.assert_close(restored.log_factor, balance.log_factor)
    # A checkpoint of the mean-probability alignment loads with factors 1.
    fresh = ClassShareAlignment(num_classes=3)
    fresh.load_state_dict(DistributionAlignment(num_classes=3).state_dict())
    assert torch.count_nonzero(fresh.log_factor) == 0
    with pytest.raises(ValueError, match='3 classes'):
        balance(torch.full((1, 4, 2, 2), 0.25), torch.ones(1, 2, 2).bool())
    for kwargs, key in ((dict(rate=0.0), 'rate'),
                        (dict(share_momentum=1.0), 'share_momentum')):
        with pytest.raises(ValueError, match=key):
            ClassShareAlignment(3, **kwargs)


def test_confidence_labeler_with_alignment_keeps_the_rare_class():
    """FixMatch-style threshold 0.5 on the dominant map whose rare class
    (5% of the pixels, 15% of the labeled ones) the teacher predicts at
    p=0.45: no rare pixel passes the threshold until alignment lifts them
    (factor ~3), and the dominant pixels keep their class."""
    probs, rare = dominant_map(rare_p=0.45)
    labeler = ConfidencePseudoLabeler(threshold=0.5)
    valid = torch.ones_like(rare)
    raw = rectified_pseudo_labels(labeler, None, probs, None, valid, (0, 1))
    assert (raw.labels == 2).sum() == 0
    balance = DistributionAlignment(3, momentum=0.0)
    balance.update_labeled(torch.tensor([80., 5., 15.]))
    aligned = rectified_pseudo_labels(labeler, None, probs, None, valid,
                                      (0, 1), balance)
    assert (aligned.labels[rare] == 2).float().mean() > 0.9
    assert (aligned.labels[~rare] == 0).float().mean() > 0.99


# ---------------------------------------------------------------- monitor
def test_class_share_monitor_counts_and_resets():
    monitor = ClassShareMonitor(num_classes=3)
    monitor.update_labeled(torch.tensor([5., 0., 1.]))
    raw = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.0, 0.4],
                        [0.2, 0.7, 0.1]]).t().reshape(1, 3, 1, 3)
    final = torch.tensor([[0.9, 0.1, 0.0], [0.3, 0.0, 0.7],
                          [0.2, 0.7, 0.1]]).t().reshape(1, 3, 1, 3)
    pseudo = EntropyPseudoLabeler(alpha_0=0.0)(final)
    pseudo.labels[0, 0, 1] = IGNORE  # say the labeler dropped pixel 1
    monitor.update_pseudo(raw, pseudo)
    counts = monitor.read_and_reset()
    np.testing.assert_array_equal(counts['labeled'].numpy(), [5, 0, 1])
    np.testing.assert_array_equal(counts['predicted'].numpy(), [1, 1, 1])
    np.testing.assert_array_equal(counts['reliable'].numpy(), [1, 1, 0])
    flips = np.zeros((3, 3))
    flips[0, 0] = flips[0, 2] = flips[1, 1] = 1  # raw 0 -> final 2 once
    np.testing.assert_array_equal(counts['flips'].numpy(), flips)
    assert all(v.sum() == 0 for v in monitor.read_and_reset().values())
    assert monitor.state_dict() == {}


# ------------------------------------------------------------------ guard
class FakeModel(torch.nn.Module):

    def __init__(self, num_classes=3):
        super().__init__()
        self.monitor = ClassShareMonitor(num_classes)
        self.paused_until = 0

    def class_share_monitors(self):
        return {'': self.monitor}

    def pause_unsup(self, until_iter):
        self.paused_until = until_iter


class FakeDataset:
    metainfo = dict(classes=('background', 'shirt', 'bag'))


class FakeLoader:
    dataset = FakeDataset()


class FakeRunner:

    def __init__(self, model, log_dir):
        self.model = model
        self.iter = 0
        self.rank = 0
        self.log_dir = str(log_dir)
        self.train_dataloader = FakeLoader()
        self.message_hub = MessageHub.get_instance('class_guard_test')
        self.logger = logging.getLogger('class_guard_test')


def feed_window(model, labeled, pseudo_share, pixels=1000):
    """One window: labeled counts, and pseudo-labels with the given class
    shares, all reliable."""
    model.monitor.update_labeled(torch.tensor(labeled, dtype=torch.float32))
    counts = [int(round(s * pixels)) for s in pseudo_share]
    labels = torch.cat([torch.full((n, ), c) for c, n in enumerate(counts)])
    probs = torch.nn.functional.one_hot(labels, 3).float().t().reshape(
        1, 3, 1, -1)
    pseudo = EntropyPseudoLabeler(alpha_0=0.0)(probs)
    model.monitor.update_pseudo(probs, pseudo)


def run_guard(hook, runner, model, shares, labeled=(700., 200., 100.)):
    for step, share in enumerate(shares):
        feed_window(model, labeled, share)
        runner.iter = (step + 1) * hook.interval - 1
        hook.after_train_iter(runner, batch_idx=runner.iter)


def test_guard_fires_on_a_shrinking_class_not_on_stable_ones(
        tmp_path, caplog):
    model = FakeModel()
    runner = FakeRunner(model, tmp_path)
    hook = ClassCollapseGuardHook(interval=10, min_share_ratio=0.25,
                                  patience=2, pause_iters=30)
    # 'bag' (labeled share 0.1) shrinks: 0.1, 0.05, 0.02, 0.01, 0.01.
    shares = [(0.7, 0.2, 0.1), (0.75, 0.2, 0.05), (0.78, 0.2, 0.02),
              (0.79, 0.2, 0.01), (0.79, 0.2, 0.01)]
    with caplog.at_level(logging.WARNING, logger='class_guard_test'):
        run_guard(hook, runner, model, shares)
    warnings = [r.getMessage() for r in caplog.records
                if 'missing class' in r.getMessage()]
    # Below 0.25 x 0.1 from window 3 on; patience 2 -> once, at window 4.
    assert len(warnings) == 1
    assert "'bag'" in warnings[0] and 'iteration 40' in warnings[0]
    assert model.paused_until == 40 + 30
    records = [json.loads(line)
               for line in open(tmp_path / 'class_shares.jsonl')]
    assert [r['iter'] for r in records] == [10, 20, 30, 40, 50]
    assert records[-1]['collapsing'] == ['bag']
    assert records[0]['collapsing'] == []
    assert records[-1]['pseudo_label_share'][2] == pytest.approx(0.01)
    assert records[-1]['labeled_share'] == pytest.approx([0.7, 0.2, 0.1])
    assert records[-1]['min_share_ratio'] == pytest.approx(0.1)
    assert runner.message_hub.get_scalar(
        'train/pl_min_share_ratio').current() == pytest.approx(0.1)


def test_guard_silent_on_stable_shares_and_during_warm_up(tmp_path, caplog):
    model = FakeModel()
    runner = FakeRunner(model, tmp_path)
    hook = ClassCollapseGuardHook(interval=10, patience=1)
    # A warm-up window: labeled batches only, no pseudo-labels.
    model.monitor.update_labeled(torch.tensor([700., 200., 100.]))
    runner.iter = 9
    hook.after_train_iter(runner, 9)
    shares = [(0.72, 0.18, 0.1), (0.68, 0.22, 0.1), (0.7, 0.2, 0.1),
              (0.75, 0.2, 0.05)]
    with caplog.at_level(logging.WARNING, logger='class_guard_test'):
        run_guard(hook, runner, model, shares)
    assert not [r for r in caplog.records if 'missing' in r.getMessage()]
    assert model.paused_until == 0
    assert len(open(tmp_path / 'class_shares.jsonl').readlines()) == 4


def test_guard_arguments_are_checked():
    for kwargs, key in ((dict(interval=0), 'interval'),
                        (dict(patience=0), 'patience'),
                        (dict(pause_iters=-1), 'pause_iters'),
                        (dict(min_share_ratio=0), 'min_share_ratio'),
                        (dict(min_share_ratio=1.5), 'min_share_ratio')):
        with pytest.raises(ValueError, match=key):
            ClassCollapseGuardHook(**kwargs)


def test_classwise_labeler_logs_the_mean_pixel_threshold():
    probs, rare = dominant_map()
    pseudo = EntropyPseudoLabeler(alpha_0=0.2, schedule='constant')(probs)
    entropy = pixel_entropy(probs)
    rare_gamma = np.percentile(entropy[rare].numpy(), 80)
    dominant_gamma = np.percentile(entropy[~rare].numpy(), 80)
    share = rare.float().mean().item()
    expected = share * rare_gamma + (1 - share) * dominant_gamma
    assert math.isfinite(pseudo.threshold.item())
    assert pseudo.threshold.item() == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------- segmentors
def test_mean_teacher_aligns_by_default_and_counts_classes():
    from test_mean_teacher import build, semi_batch
    from mmseg_semi.models.utils.segmentor_forward import stack_gt_labels
    model = build(unsup_start_iter=0)
    assert isinstance(model.class_balance, DistributionAlignment)
    assert model.class_balance.num_classes == \
        model.student.decode_head.num_classes
    assert model.pseudo_labeler.class_wise
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['unsup_loss_ce'])
    labels = stack_gt_labels(data['data_samples']['labeled'])
    num_classes = model.class_balance.num_classes
    counts = class_pixel_counts(labels, num_classes)
    torch.testing.assert_close(model.class_balance.labeled_share,
                               counts / counts.sum())
    assert bool(model.class_balance.teacher_initialised)
    [(prefix, monitor)] = model.class_share_monitors().items()
    assert prefix == ''
    window = monitor.read_and_reset()
    torch.testing.assert_close(window['labeled'], counts)
    valid_pixels = data['inputs']['weak'].shape[0] * \
        data['inputs']['weak'][0, 0].numel()
    assert window['predicted'].sum() == valid_pixels
    assert window['flips'].sum() == valid_pixels


def test_paused_unsupervised_loss_and_the_paper_switches():
    from test_mean_teacher import build, semi_batch
    model = build(unsup_start_iter=0, class_balance=None,
                  pseudo_labeler=dict(type='EntropyPseudoLabeler',
                                      class_wise=False))
    assert model.class_balance is None
    assert not model.pseudo_labeler.class_wise
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    model.pause_unsup(5)
    model.set_train_progress(3, 10)
    assert 'unsup_loss_ce' not in model.loss(data['inputs'],
                                             data['data_samples'])
    model.set_train_progress(5, 10)
    assert 'unsup_loss_ce' in model.loss(data['inputs'],
                                         data['data_samples'])


def test_dual_student_has_one_alignment_and_monitor_per_teacher():
    from test_dual_student import build_model, semi_batch
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
