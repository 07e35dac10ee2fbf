"""U2PL contrastive learning: masks (Eq. 10-15), positives (Eq. 12), InfoNCE
(Eq. 4) of models/utils/contrastive_functional.py, and the loss module with
its class queues (Eq. 16) that uses them (the representation head is in
tests/models/decode_heads/test_representation_head.py).

Several tests are regression tests for defects of the public reference code
(see the test names): each builds a case where the defective behaviour would
give a different answer.
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_semi.models.losses import U2PLContrastiveLoss
from mmseg_semi.models.utils.contrastive_functional import (
    anchor_mask, class_positive_keys, class_rank, flatten_pixels,
    gather_pixels, info_nce, labeled_negative_mask, sample_anchor_pixels,
    unlabeled_negative_mask)
from helpers import gloo_group, spawn_gloo_workers

IGNORE = 255


# ----------------------------------------------------------------- helpers
def pixel_probs(ranking, top=0.7):
    """Probabilities of one pixel whose classes, best first, are ``ranking``.

    The best class gets ``top``; the others share ``1 - top`` in strictly
    decreasing amounts, so the ranks are unambiguous.
    """
    num_classes = len(ranking)
    shares = list(range(num_classes - 1, 0, -1))
    probs = [0.0] * num_classes
    probs[ranking[0]] = top
    for cls, share in zip(ranking[1:], shares):
        probs[cls] = (1 - top) * share / sum(shares)
    return probs


def probs_from_rankings(rankings, top=0.7):
    """(B, h, w) nested lists of rankings -> (B, C, h, w) probabilities."""
    values = torch.tensor([[[pixel_probs(r, top) for r in row]
                            for row in image] for image in rankings])
    return values.permute(0, 3, 1, 2).contiguous()


def label_first(label, num_classes):
    """Ranking with ``label`` first, then the other classes by index."""
    first = 0 if label == IGNORE else label
    return [first] + [c for c in range(num_classes) if c != first]


def reference_ranks(probs):
    """Rank of each class at each pixel by sorting a Python list."""
    batch, num_classes, height, width = probs.shape
    ranks = torch.empty(probs.shape, dtype=torch.long)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                values = probs[b, :, i, j].tolist()
                order = sorted(range(num_classes),
                               key=lambda c: (-values[c], c))
                for rank, cls in enumerate(order):
                    ranks[b, cls, i, j] = rank
    return ranks


def pixels(tensor_bhw):
    """Iterate (flat index, b, i, j) in the module's pixel order."""
    batch, height, width = tensor_bhw.shape[-3:]
    n = 0
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                yield n, b, i, j
                n += 1


def cosine(u, v):
    u, v = u.double(), v.double()
    return float(u @ v / (u.norm() * v.norm()))


def infonce_term(anchor, positive, negatives, temperature):
    """-log(e^{s+/t} / (e^{s+/t} + sum_j e^{s-_j/t})) written out."""
    pos = math.exp(cosine(anchor, positive) / temperature)
    neg = sum(math.exp(cosine(anchor, n) / temperature) for n in negatives)
    return -math.log(pos / (pos + neg))


def fill_queue(bank, cls, keys):
    """Hand-fill queue ``cls`` with the rows of ``keys``."""
    bank.keys[cls].zero_()
    bank.keys[cls, :len(keys)] = keys
    bank.count[cls] = len(keys)
    bank.ptr[cls] = len(keys) % bank.queue_size


def queue(bank, cls):
    return bank.keys[cls, :int(bank.count[cls])]


# ------------------------------------------------------------- class_rank
def test_class_rank_hand_built():
    probs = torch.tensor([[[0.1, 0.7], [0.5, 0.1], [0.3, 0.05], [0.1, 0.15]],
                          [[0.25, 0.05], [0.25, 0.15], [0.25, 0.2],
                           [0.25, 0.6]]]).unsqueeze(2)  # (2, 4, 1, 2)
    ranks = class_rank(probs)
    assert ranks.dtype == torch.long and ranks.shape == (2, 4, 1, 2)
    assert ranks[0, :, 0, 0].tolist() == [2, 0, 1, 3]  # tie: lower index
    assert ranks[0, :, 0, 1].tolist() == [0, 2, 3, 1]
    assert ranks[1, :, 0, 0].tolist() == [0, 1, 2, 3]
    assert ranks[1, :, 0, 1].tolist() == [3, 2, 1, 0]


def test_class_rank_matches_sorting_reference():
    probs = torch.rand(2, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(class_rank(probs), reference_ranks(probs))


# --------------------------------------------------------- anchors, Eq. 10-11
def test_anchor_mask_keeps_each_image_labels_regression():
    """Reference defect: the one-hot scatter put all labels into image 0.

    Class 2 exists only in image 1; its anchors must be image 1's pixels.
    """
    labels = torch.tensor([[[0, 1, IGNORE]], [[2, 2, 1]]])
    probs = torch.tensor([
        [[0.6, 0.2, 0.95], [0.3, 0.5, 0.03], [0.1, 0.3, 0.02]],
        [[0.1, 0.3, 0.1], [0.1, 0.3, 0.2], [0.8, 0.4, 0.7]],
    ]).unsqueeze(2)  # (2, 3, 1, 3)
    mask = anchor_mask(labels, probs, 3, prob_threshold=0.3)
    # Pixel order: image 0 (0, 1, 2), image 1 (3, 4, 5).
    assert mask.tolist() == [
        [True, False, False, False, False, False],
        [False, True, False, False, False, False],  # p=0.2 at pixel 5
        [False, False, False, True, True, False],
    ]


def test_anchor_mask_ignored_pixel_is_never_class_zero_regression():
    labels = torch.full((1, 1, 2), IGNORE)
    probs = torch.tensor([[[0.99, 0.99]], [[0.01, 0.01]]]).unsqueeze(0)
    assert not anchor_mask(labels, probs, 2, 0.3).any()


def test_anchor_mask_matches_loop_reference():
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 4, (2, 3, 3), generator=generator)
    labels[labels == 3] = IGNORE  # classes 0..2 plus ignored pixels
    probs = torch.rand(2, 3, 3, 3, generator=generator).softmax(dim=1)
    mask = anchor_mask(labels, probs, 3, prob_threshold=0.35)
    for n, b, i, j in pixels(labels):
        for c in range(3):
            expected = (labels[b, i, j] == c) and probs[b, c, i, j] > 0.35
            assert bool(mask[c, n]) == bool(expected)


def test_anchor_threshold_is_strict():
    labels = torch.tensor([[[0, 0]]])
    probs = torch.tensor([[[[0.3, 0.31]], [[0.7, 0.69]]]])
    mask = anchor_mask(labels, probs, 2, 0.3)
    assert mask.tolist() == [[False, True], [False, False]]


# --------------------------------------------------- negatives, Eq. 14-15
def test_labeled_negatives_hand_built():
    # One image, 3 pixels, C = 4. Rankings best first:
    #   pixel 0: label 1, ranking [2, 1, 0, 3] (mistaken for class 2)
    #   pixel 1: label 3, ranking [3, 0, 1, 2]
    #   pixel 2: label 255, ranking [0, 1, 2, 3] (padding, p(0) high)
    labels = torch.tensor([[[1, 3, IGNORE]]])
    probs = probs_from_rankings([[[[2, 1, 0, 3], [3, 0, 1, 2],
                                   [0, 1, 2, 3]]]])
    ranks = class_rank(probs)
    rank1 = labeled_negative_mask(labels, ranks, low_rank=1)
    # r_l=1: only the arg-max class, if it is not the label.
    assert rank1.tolist() == [[False, False, False], [False, False, False],
                              [True, False, False], [False, False, False]]
    rank2 = labeled_negative_mask(labels, ranks, low_rank=2)
    # r_l=2: pixel 0 is a negative for 2 (rank 0); its own class 1 (rank 1)
    # is not. Pixel 1 for class 0 (rank 1). Pixel 2 never (ignored).
    assert rank2.tolist() == [[False, True, False], [False, False, False],
                              [True, False, False], [False, False, False]]


def test_labeled_negatives_match_loop_reference():
    generator = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 6, (2, 3, 3), generator=generator)
    labels[labels == 5] = IGNORE
    probs = torch.rand(2, 5, 3, 3, generator=generator).softmax(dim=1)
    ranks = reference_ranks(probs)
    for low_rank in (1, 2, 3):
        mask = labeled_negative_mask(labels, class_rank(probs), low_rank)
        for n, b, i, j in pixels(labels):
            label = int(labels[b, i, j])
            for c in range(5):
                expected = (label != c and label != IGNORE
                            and 0 <= ranks[b, c, i, j] < low_rank)
                assert bool(mask[c, n]) == expected, (low_rank, c, n)


def test_unlabeled_negatives_hand_built():
    # Pixel 0 unreliable with ranking [1, 2, 0, 3]: ranks c0=2, c1=0, c2=1,
    # c3=3. Pixel 1 has the same ranking but is reliable.
    probs = probs_from_rankings([[[[1, 2, 0, 3], [1, 2, 0, 3]]]])
    unreliable = torch.tensor([[[True, False]]])
    mask = unlabeled_negative_mask(unreliable, class_rank(probs),
                                   low_rank=1, high_rank=3)
    assert mask.tolist() == [[True, False], [False, False], [True, False],
                             [False, False]]
    mask = unlabeled_negative_mask(unreliable, class_rank(probs),
                                   low_rank=2, high_rank=4)
    assert mask.tolist() == [[True, False], [False, False], [False, False],
                             [True, False]]


def test_unlabeled_negatives_match_loop_reference():
    generator = torch.Generator().manual_seed(3)
    unreliable = torch.rand(2, 3, 3, generator=generator) > 0.5
    probs = torch.rand(2, 5, 3, 3, generator=generator).softmax(dim=1)
    ranks = reference_ranks(probs)
    for low_rank, high_rank in ((1, 3), (2, 4), (1, 5)):
        mask = unlabeled_negative_mask(unreliable, class_rank(probs),
                                       low_rank, high_rank)
        for n, b, i, j in pixels(unreliable):
            for c in range(5):
                expected = bool(unreliable[b, i, j]) and (
                    low_rank <= ranks[b, c, i, j] < high_rank)
                assert bool(mask[c, n]) == expected


# ------------------------------------------------------- positives, Eq. 12
def test_class_positive_keys_is_class_mean_per_image_regression():
    generator = torch.Generator().manual_seed(4)
    feats = torch.randn(2, 3, 2, 2, generator=generator)
    flat = flatten_pixels(feats)
    # Class 1's anchors are pixels (1, 0, 1) and (1, 1, 0): image 1 only.
    mask = torch.zeros(3, 8, dtype=torch.bool)
    mask[0, [0, 3]] = True
    mask[1, [5, 6]] = True
    positives, has_pixels = class_positive_keys(flat, mask)
    assert has_pixels.tolist() == [True, True, False]
    assert torch.allclose(positives[0], (feats[0, :, 0, 0] +
                                         feats[0, :, 1, 1]) / 2)
    assert torch.allclose(positives[1], (feats[1, :, 0, 1] +
                                         feats[1, :, 1, 0]) / 2)
    assert torch.equal(positives[2], torch.zeros(3))


def test_flatten_and_gather_pixels_use_the_same_order():
    feats = torch.randn(2, 3, 2, 3)
    flat = flatten_pixels(feats)
    for n, b, i, j in pixels(feats[:, 0]):
        assert torch.equal(flat[n], feats[b, :, i, j])
    index = torch.tensor([[0, 11], [7, 3]])
    assert torch.equal(gather_pixels(feats, index), flat[index])


# --------------------------------------------------------- InfoNCE, Eq. 4
def test_info_nce_matches_direct_formula():
    generator = torch.Generator().manual_seed(5)
    anchors = torch.randn(3, 2, 4, generator=generator)
    positives = torch.randn(3, 4, generator=generator)
    negatives = torch.randn(3, 2, 5, 4, generator=generator) * 3
    valid = torch.tensor([True, False, True])
    loss = info_nce(anchors, positives, negatives, 0.5, valid)
    expected = 0.0
    for c in (0, 2):
        for m in range(2):
            expected += infonce_term(anchors[c, m], positives[c],
                                     negatives[c, m], 0.5) / 2
    expected /= 2
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_ignores_invalid_classes():
    generator = torch.Generator().manual_seed(6)
    anchors = torch.randn(2, 3, 4, generator=generator)
    positives = torch.randn(2, 4, generator=generator)
    negatives = torch.randn(2, 3, 5, 4, generator=generator)
    valid = torch.tensor([True, False])
    loss = info_nce(anchors, positives, negatives, 0.2, valid)
    anchors[1] = torch.randn(3, 4, generator=generator)
    negatives[1] = 0  # zero keys: cosine 0, still finite
    assert info_nce(anchors, positives, negatives, 0.2, valid) == loss


def test_info_nce_is_exact_zero_with_graph_when_nothing_valid():
    anchors = torch.randn(2, 3, 4, requires_grad=True)
    loss = info_nce(anchors, torch.randn(2, 4), torch.randn(2, 3, 5, 4), 0.5,
                    torch.zeros(2, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(anchors.grad, torch.zeros_like(anchors))


def test_info_nce_rejects_bad_arguments():
    anchors, positives = torch.randn(2, 3, 4), torch.randn(2, 4)
    negatives, valid = torch.randn(2, 3, 5, 4), torch.ones(2, dtype=bool)
    with pytest.raises(ValueError, match='temperature'):
        info_nce(anchors, positives, negatives, 0.0, valid)
    with pytest.raises(ValueError, match='negatives'):
        info_nce(anchors, positives, negatives[:, :2], 0.5, valid)
    with pytest.raises(ValueError, match='valid'):
        info_nce(anchors, positives, negatives, 0.5, valid.float())


def test_sample_anchor_pixels_draws_only_anchors():
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[0, [2, 7]] = True
    mask[2, 9] = True
    index = sample_anchor_pixels(mask, 400, torch.Generator().manual_seed(0))
    assert index.shape == (3, 400)
    assert set(index[0].tolist()) == {2, 7}
    assert set(index[2].tolist()) == {9}
    # Class 1 has no anchor: placeholder indices, but valid ones.
    assert bool(((index[1] >= 0) & (index[1] < 10)).all())


# --------------------------------------------------- the loss module
def per_class_scenario():
    """Labeled batch of 2 where no negative is pushed (r_l = 1).

    Classes: 3 in image 0 only, 1 in image 1 only, 0 in image 0 only (but
    with an empty queue), and a padded pixel per image whose teacher is
    sure of class 0. Student reps are identical within a class, so the
    loss does not depend on which anchors are drawn.
    """
    labels = torch.tensor([[[3, 3], [0, IGNORE]], [[1, 1], [1, IGNORE]]])
    probs = probs_from_rankings(
        [[[label_first(int(v), 4) for v in row] for row in image]
         for image in labels.tolist()])
    generator = torch.Generator().manual_seed(7)
    class_reps = torch.randn(4, 3, generator=generator)
    student = torch.randn(2, 3, 2, 2, generator=generator)
    for n, b, i, j in pixels(labels):
        if labels[b, i, j] != IGNORE:
            student[b, :, i, j] = class_reps[labels[b, i, j]]
    teacher = torch.randn(2, 3, 2, 2, generator=generator)
    queue_keys = torch.randn(4, 3, generator=generator)
    return dict(labels=labels, probs=probs, student=student,
                teacher=teacher, class_reps=class_reps, queue_keys=queue_keys)


def per_class_loss(**kwargs):
    args = dict(num_classes=4, feat_channels=3, num_anchors=4,
                num_negatives=5, temperature=0.5, anchor_prob_threshold=0.3,
                low_rank=1, high_rank=3, queue_size=8, loss_weight=0.1)
    args.update(kwargs)
    return U2PLContrastiveLoss(**args)


def run_per_class_scenario(loss, scenario, queue_for_1, queue_for_3):
    fill_queue(loss.memory_bank, 1, queue_for_1)
    fill_queue(loss.memory_bank, 3, queue_for_3)
    return loss(scenario['student'], scenario['teacher'], scenario['labels'],
                scenario['probs'], torch.zeros(2, 2, 2, dtype=torch.bool),
                torch.tensor([True, True]),
                generator=torch.Generator().manual_seed(0))


def expected_per_class_loss(scenario, queue_for_1, queue_for_3,
                            loss_weight=0.1):
    teacher = scenario['teacher']
    positive_1 = (teacher[1, :, 0, 0] + teacher[1, :, 0, 1] +
                  teacher[1, :, 1, 0]) / 3
    positive_3 = (teacher[0, :, 0, 0] + teacher[0, :, 0, 1]) / 2
    reps = scenario['class_reps']
    # Every queue entry is a rescaled copy of one key (same cosine), so the
    # 5 sampled negatives are all equivalent to queue[0].
    term_1 = infonce_term(reps[1], positive_1, [queue_for_1[0]] * 5, 0.5)
    term_3 = infonce_term(reps[3], positive_3, [queue_for_3[0]] * 5, 0.5)
    return loss_weight * (term_1 + term_3) / 2


def test_each_class_uses_its_own_prototype_and_queue_regression():
    """Reference defect: prototypes and queues indexed inconsistently.

    Valid classes are 1 and 3 (class 0 has anchors but an empty queue), so
    an index into the list of present classes differs from the class id.
    """
    scenario = per_class_scenario()
    keys = scenario['queue_keys']
    queue_1 = torch.stack([keys[1], 2 * keys[1], 0.5 * keys[1]])
    queue_3 = keys[3:4]
    loss = per_class_loss()
    value = run_per_class_scenario(loss, scenario, queue_1, queue_3)
    expected = expected_per_class_loss(scenario, queue_1, queue_3)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # Nothing was pushed: no labeled negative at r_l = 1, and the padded
    # pixel (label 255, p(0) = 0.7) is no negative of class 0.
    assert loss.memory_bank.count.tolist() == [0, 3, 0, 1]

    swapped = run_per_class_scenario(per_class_loss(), scenario, queue_3,
                                     queue_1)
    expected_swapped = expected_per_class_loss(scenario, queue_3, queue_1)
    assert swapped.item() == pytest.approx(expected_swapped, rel=1e-5)
    assert abs(swapped.item() - value.item()) > 1e-3


def test_loss_weight_is_applied_once():
    scenario = per_class_scenario()
    keys = scenario['queue_keys']
    weighted = run_per_class_scenario(
        per_class_loss(loss_weight=0.1), scenario, keys[1:2], keys[3:4])
    unit = run_per_class_scenario(
        per_class_loss(loss_weight=1.0), scenario, keys[1:2], keys[3:4])
    assert weighted.item() == pytest.approx(0.1 * unit.item(), rel=1e-6)


def _ddp_loss_worker(rank, world_size, init_method, out_dir):
    with gloo_group(rank, world_size, init_method):
        scenario = per_class_scenario()
        keys = scenario['queue_keys']
        value = run_per_class_scenario(per_class_loss(), scenario,
                                       keys[1:2], keys[3:4])
        torch.save(value.detach(), os.path.join(out_dir, f'{rank}.pth'))


def test_loss_weight_is_not_divided_by_world_size_regression(tmp_path):
    """Reference defect: lambda_c was divided by the number of GPUs."""
    scenario = per_class_scenario()
    keys = scenario['queue_keys']
    expected = expected_per_class_loss(scenario, keys[1:2], keys[3:4])
    spawn_gloo_workers(_ddp_loss_worker, str(tmp_path))
    for rank in range(2):
        value = torch.load(tmp_path / f'{rank}.pth')
        assert value.item() == pytest.approx(expected, rel=1e-5)


def test_ignored_pixels_never_act_as_class_zero_regression():
    """Only padded pixels look like class 0: class 0 must not be valid."""
    labels = torch.tensor([[[IGNORE, IGNORE], [1, 1]]])
    probs = probs_from_rankings([[[[0, 1, 2], [0, 1, 2]],
                                  [[1, 0, 2], [1, 0, 2]]]], top=0.9)
    loss = U2PLContrastiveLoss(num_classes=3, feat_channels=2,
                               num_anchors=3, num_negatives=2, low_rank=2,
                               high_rank=3, queue_size=4)
    fill_queue(loss.memory_bank, 0, torch.tensor([[1.0, 0.0]]))
    student = torch.randn(1, 2, 2, 2, requires_grad=True)
    value = loss(student, torch.randn(1, 2, 2, 2), labels, probs,
                 torch.zeros(1, 2, 2, dtype=torch.bool), torch.tensor([True]))
    # Class 1 has anchors but no queue; class 0 has a queue but no anchor.
    assert value.item() == 0.0
    # r_l = 2: the class-1 pixels are negatives of class 0 (rank 1); the
    # padded pixels (rank 0 for class 0) are not.
    assert loss.memory_bank.count.tolist() == [3, 0, 0]


def test_unreliable_pixel_is_negative_whatever_its_pseudo_label_regression():
    """Eq. 15 has no condition on the pseudo-label of the pixel."""
    num_classes = 5
    # Unlabeled image, 1 x 4 pixels, r_l = 1, r_h = 3. Rankings (best first)
    # and the rank of class 2 in each:
    #   p0: [4, 2, 0, 1, 3] rank 1, unreliable, pseudo-label 2
    #   p1: [4, 0, 2, 1, 3] rank 2, unreliable, pseudo-label ignored
    #   p2: [4, 2, 0, 1, 3] rank 1, reliable (pseudo-label 4)
    #   p3: [4, 0, 1, 2, 3] rank 3, unreliable
    rankings = [[4, 2, 0, 1, 3], [4, 0, 2, 1, 3], [4, 2, 0, 1, 3],
                [4, 0, 1, 2, 3]]
    probs = probs_from_rankings([[rankings]], top=0.4)
    labels = torch.tensor([[[2, IGNORE, 4, IGNORE]]])
    unreliable = torch.tensor([[[True, True, False, True]]])
    teacher = torch.randn(1, 3, 1, 4)
    loss = U2PLContrastiveLoss(num_classes=num_classes, feat_channels=3,
                               num_anchors=2, num_negatives=2, low_rank=1,
                               high_rank=3, queue_size=10)
    loss(torch.randn(1, 3, 1, 4), teacher, labels, probs, unreliable,
         torch.tensor([False]))
    unit_teacher = F.normalize(teacher[0, :, 0].t(), dim=1)
    assert torch.allclose(queue(loss.memory_bank, 2), unit_teacher[[0, 1]])
    # Every class's queue against the rank band, pixel by pixel.
    for cls in range(num_classes):
        expected = [n for n in range(4) if unreliable[0, 0, n]
                    and 1 <= rankings[n].index(cls) < 3]
        assert torch.allclose(queue(loss.memory_bank, cls),
                              unit_teacher[expected]), cls


def random_batch(seed, batch=2, num_classes=3, size=4, channels=8):
    """Random labeled + unlabeled batch; class 2 is always ranked last."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes + 1, (batch, size, size),
                           generator=generator)
    labels[labels == num_classes] = IGNORE
    logits = torch.randn(batch, num_classes, size, size, generator=generator)
    logits[:, 2] = logits.min(dim=1).values - 1
    return dict(
        student=torch.randn(batch, channels, size, size, generator=generator),
        teacher=torch.randn(batch, channels, size, size, generator=generator),
        labels=labels,
        probs=logits.softmax(dim=1),
        unreliable=torch.rand(batch, size, size, generator=generator) > 0.5,
        is_labeled=torch.tensor([True] + [False] * (batch - 1)))


def random_batch_loss(**kwargs):
    args = dict(num_classes=3, feat_channels=8, num_anchors=16,
                num_negatives=4, anchor_prob_threshold=0.0, low_rank=1,
                high_rank=2, queue_size=64)
    args.update(kwargs)
    return U2PLContrastiveLoss(**args)


def call(loss, batch, seed=0, **overrides):
    inputs = dict(batch)
    inputs.update(overrides)
    return loss(inputs['student'], inputs['teacher'], inputs['labels'],
                inputs['probs'], inputs['unreliable'], inputs['is_labeled'],
                generator=torch.Generator().manual_seed(seed))


def test_gradient_reaches_only_sampled_student_anchors():
    batch = random_batch(0)
    student = batch['student'].clone().requires_grad_()
    teacher = batch['teacher'].clone().requires_grad_()
    probs = batch['probs'].clone().requires_grad_()
    loss = random_batch_loss(num_anchors=1000)
    value = call(loss, batch, student=student, teacher=teacher, probs=probs)
    value.backward()
    assert teacher.grad is None and probs.grad is None
    # Class 2 is ranked last everywhere, so with r_l=1, r_h=2 it never gets
    # a negative: its anchors must not receive gradient.
    assert loss.memory_bank.count.tolist()[2] == 0
    assert min(loss.memory_bank.count.tolist()[:2]) > 0
    labels = batch['labels']
    has_grad = student.grad.abs().sum(dim=1) > 0
    for _, b, i, j in pixels(labels):
        # 1000 draws per class cover every anchor pixel.
        assert bool(has_grad[b, i, j]) == (int(labels[b, i, j]) in (0, 1))


def test_zero_not_nan_when_no_class_has_anchors():
    batch = random_batch(1)
    loss = random_batch_loss()
    fill_queue(loss.memory_bank, 0, torch.randn(3, 8))
    student = batch['student'].clone().requires_grad_()
    value = call(loss, batch, student=student,
                 labels=torch.full_like(batch['labels'], IGNORE))
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


def test_zero_not_nan_when_queues_stay_empty():
    batch = random_batch(2)
    loss = random_batch_loss()
    student = batch['student'].clone().requires_grad_()
    # No unreliable pixel and r_l = 1 with peaked labeled pixels: no pushes.
    labels = batch['labels'].clone()
    labels[0] = batch['probs'][0].argmax(dim=0)
    value = call(loss, batch, student=student, labels=labels,
                 unreliable=torch.zeros_like(batch['unreliable']))
    assert loss.memory_bank.count.tolist() == [0, 0, 0]
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(student.grad).all()
    assert not student.grad.any()


def test_zero_not_nan_when_all_unlabeled_pixels_are_unreliable():
    batch = random_batch(3, batch=2)
    batch['is_labeled'] = torch.tensor([False, False])
    loss = random_batch_loss()
    # All unreliable: the pseudo-labeler marks every pixel ignored.
    value = call(loss, batch,
                 labels=torch.full_like(batch['labels'], IGNORE),
                 unreliable=torch.ones_like(batch['unreliable']))
    assert value.item() == 0.0
    assert loss.memory_bank.count.tolist()[:2] != [0, 0]


def test_two_classes_with_default_ranks():
    loss = U2PLContrastiveLoss(num_classes=2, feat_channels=4,
                               num_anchors=4, num_negatives=3, queue_size=8)
    assert (loss.low_rank, loss.high_rank) == (1, 2)
    # Image 0 labeled: pixel (0, 0) is class 1 predicted as 0 -> negative of
    # class 0; pixel (0, 1) class 0 predicted as 0 -> anchor of class 0.
    # Image 1 unlabeled: pixel (0, 0) unreliable, predicted 0 -> negative
    # of class 1; pixel (0, 1) reliable pseudo-label 1 -> anchor of class 1.
    labels = torch.tensor([[[1, 0]], [[IGNORE, 1]]])
    probs = probs_from_rankings([[[[0, 1], [0, 1]]], [[[0, 1], [1, 0]]]],
                                top=0.8)
    unreliable = torch.tensor([[[False, False]], [[True, False]]])
    teacher = torch.randn(2, 4, 1, 2)
    student = torch.randn(2, 4, 1, 2, requires_grad=True)
    value = loss(student, teacher, labels, probs, unreliable,
                 torch.tensor([True, False]))
    unit_teacher = F.normalize(flatten_pixels(teacher), dim=1)
    assert torch.allclose(queue(loss.memory_bank, 0), unit_teacher[[0]])
    assert torch.allclose(queue(loss.memory_bank, 1), unit_teacher[[2]])
    # Both classes valid, with a single anchor pixel and a single negative.
    expected = 0.0
    for cls, anchor_pixel, key_pixel in ((0, (0, 0, 1), (0, 0, 0)),
                                         (1, (1, 0, 1), (1, 0, 0))):
        b, i, j = anchor_pixel
        kb, ki, kj = key_pixel
        expected += infonce_term(student[b, :, i, j].detach(),
                                 teacher[b, :, i, j],
                                 [teacher[kb, :, ki, kj]] * 3, 0.5)
    assert value.item() == pytest.approx(0.1 * expected / 2, rel=1e-5)


def test_rank_bounds_are_clamped_to_the_classes():
    def ranks(num_classes, **kwargs):
        loss = U2PLContrastiveLoss(num_classes=num_classes, feat_channels=2,
                                   queue_size=2, **kwargs)
        return loss.low_rank, loss.high_rank

    assert ranks(21) == (3, 20)
    assert ranks(19) == (3, 19)
    assert ranks(4) == (3, 4)
    assert ranks(3) == (2, 3)
    assert ranks(2) == (1, 2)
    assert ranks(5, low_rank=1, high_rank=3) == (1, 3)


def test_deterministic_with_a_generator():
    batch = random_batch(4, size=6)
    first_loss, second_loss = random_batch_loss(), random_batch_loss()
    first = call(first_loss, batch, seed=11)
    second = call(second_loss, batch, seed=11)
    assert torch.equal(first, second)
    assert torch.equal(first_loss.memory_bank.keys,
                       second_loss.memory_bank.keys)
    assert first.item() > 0
    other = call(random_batch_loss(), batch, seed=12)
    assert other.item() != first.item()


def test_inputs_at_label_resolution_are_resized():
    """Labels/masks nearest, probabilities bilinear, to the reps' size."""
    batch = random_batch(5)

    def upsample(tensor):
        return tensor.repeat_interleave(2, dim=-1).repeat_interleave(2, -2)

    low = call(random_batch_loss(), batch, seed=3)
    high = call(random_batch_loss(), batch, seed=3,
                labels=upsample(batch['labels']),
                probs=upsample(batch['probs']),
                unreliable=upsample(batch['unreliable']))
    # Nearest picks one pixel of each 2x2 block and bilinear averages two
    # equal ones, so the resized maps equal the originals.
    assert high.item() == pytest.approx(low.item(), rel=1e-6)
    assert high.item() > 0


def test_loss_is_float32_under_autocast():
    batch = random_batch(6)
    plain = call(random_batch_loss(), batch)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = call(random_batch_loss(), batch,
                     student=batch['student'].bfloat16(),
                     teacher=batch['teacher'].bfloat16())
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(plain.item(), rel=0.05)


@pytest.mark.parametrize('override, match', [
    (dict(labels=lambda b: b['labels'].float()), 'labels'),
    (dict(unreliable=lambda b: b['unreliable'].long()), 'unreliable'),
    (dict(is_labeled=lambda b: b['is_labeled'][:1]), 'is_labeled'),
    (dict(probs=lambda b: b['probs'][:, :2]), 'teacher_probs'),
    (dict(teacher=lambda b: b['teacher'][:, :4]), 'teacher_reps'),
    (dict(student=lambda b: b['student'][:, :4],
          teacher=lambda b: b['teacher'][:, :4]), 'student_reps'),
])
def test_bad_inputs_are_rejected(override, match):
    batch = random_batch(7)
    with pytest.raises(ValueError, match=match):
        call(random_batch_loss(), batch,
             **{key: make(batch) for key, make in override.items()})


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_classes=1), 'num_classes'),
    (dict(low_rank=0), 'low_rank'),
    (dict(low_rank=3, high_rank=3), 'high_rank'),
    (dict(temperature=0), 'temperature'),
    (dict(anchor_prob_threshold=1.0), 'anchor_prob_threshold'),
    (dict(ignore_index=1), 'ignore_index'),
    (dict(memory_bank=dict(num_classes=4)), 'memory_bank'),
])
def test_bad_config_is_rejected(kwargs, match):
    args = dict(num_classes=3, feat_channels=4, queue_size=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        U2PLContrastiveLoss(**args)


def test_registry_builds_loss_and_bank_config():
    loss = MODELS.build(
        dict(type='U2PLContrastiveLoss', num_classes=3, feat_channels=4,
             num_anchors=7, num_negatives=9, max_push_per_class=11,
             memory_bank=dict(queue_size=5, dtype='float16')))
    assert isinstance(loss, U2PLContrastiveLoss)
    assert loss.loss_name == 'loss_contrast'
    assert loss.loss_weight == 0.1
    assert loss.memory_bank.keys.shape == (3, 5, 4)
    assert loss.memory_bank.keys.dtype == torch.float16
    assert loss.memory_bank.max_push_per_class == 11
    assert set(loss.state_dict()) == {
        'memory_bank.keys', 'memory_bank.ptr', 'memory_bank.count'
    }
