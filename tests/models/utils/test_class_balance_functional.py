"""Class-balance math (models/utils/class_balance_functional.py): class
counts and shares, distribution alignment, class-wise entropy quantiles and
the share controller, on hand-computed values."""
import numpy as np
import pytest
import torch

from mmseg_semi.models.utils.class_balance_functional import (
    align_distribution, class_pixel_counts,
    class_probability_sums, classwise_entropy_thresholds, ema_class_shares,
    remove_class_weights)
from mmseg_semi.models.utils.pseudo_label_functional import pixel_entropy

IGNORE = 255


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


def test_remove_class_weights_by_hand():
    probs = torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1)
    # 0.5 / 1, 0.3 / 3, 0.2 -> 0 (a class of weight 0 was never labeled).
    unweighted = remove_class_weights(probs, torch.tensor([1.0, 3.0, 0.0]))
    torch.testing.assert_close(unweighted.flatten(),
                               torch.tensor([5 / 6, 1 / 6, 0.0]))


def test_remove_class_weights_recovers_the_unweighted_posterior():
    """A teacher trained with class weights c predicts q ~ c p; dividing by
    c gives p back exactly, and with it p's arg-max."""
    gen = torch.Generator().manual_seed(2)
    true = torch.randn(2, 4, 6, 6, generator=gen).softmax(dim=1)
    weight = torch.tensor([0.05, 1.0, 2.5, 8.0])
    biased = true * weight.view(1, -1, 1, 1)
    biased = biased / biased.sum(dim=1, keepdim=True)
    assert (biased.argmax(1) != true.argmax(1)).float().mean() > 0.3
    torch.testing.assert_close(remove_class_weights(biased, weight), true)
    # power 0 leaves the softmax as it is (a weight-0 class included);
    # 0.5 divides by sqrt(c).
    weight[0] = 0.0
    torch.testing.assert_close(remove_class_weights(biased, weight, 0.0),
                               biased)
    half = biased / weight.clamp_min(1e-12).sqrt().view(1, -1, 1, 1)
    half[:, 0] = 0
    torch.testing.assert_close(remove_class_weights(biased, weight, 0.5),
                               half / half.sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match='power'):
        remove_class_weights(biased, weight, 1.5)
