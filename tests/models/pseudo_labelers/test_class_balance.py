"""Class-balanced pseudo-labels: DistributionAlignment and the class-wise
entropy quantile, alone and after the rectifier, on hand-built probability
maps with one dominant class (the math is in
tests/models/utils/test_class_balance_functional.py, the monitor and the
guard hook next to their modules)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmseg_semi.models.pseudo_labelers import (ConfidencePseudoLabeler,
                                               DistributionAlignment,
                                               EntropyPseudoLabeler,
                                               PrototypeRectifier)
from mmseg_semi.models.utils.pseudo_label_functional import pixel_entropy
from mmseg_semi.models.utils.segmentor_forward import rectified_pseudo_labels

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


# ------------------------------------------------------------ labelers


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
