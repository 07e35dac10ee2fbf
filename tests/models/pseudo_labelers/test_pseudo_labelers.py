"""The pseudo-labelers: EntropyPseudoLabeler (U2PL Eq. 6-8),
ConfidencePseudoLabeler and their base class (their math is in
tests/models/utils/test_pseudo_label_functional.py)."""
import math

import pytest
import torch
from mmseg.registry import MODELS

from helpers import entropy_of, probs_1x5

from mmseg_semi.models.pseudo_labelers import (BasePseudoLabeler,
                                               ConfidencePseudoLabeler,
                                               EntropyPseudoLabeler,
                                               PseudoLabels)
from mmseg_semi.models.utils.pseudo_label_functional import \
    pseudo_label_cross_entropy

IGNORE = 255


# The last pixel is padding in the end-to-end tests.
VALID_1x5 = torch.tensor([[[True, True, True, True, False]]])


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
            for tensor in (result.probs, result.weight,
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
