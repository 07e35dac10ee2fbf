"""ClassWeightedCrossEntropyLoss: PyTorch's mean over the pixels that count
(not ignored, kept by OHEM), with or without class weights (U2PL's CELoss
and OhemCrossEntropy2dTensor; issue "Paper fidelity", U2PL item 1)."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.models.decode_heads import FCNHead
from mmseg.models.losses import CrossEntropyLoss
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

from mmseg_semi.models.losses import ClassWeightedCrossEntropyLoss


def logits_and_labels(seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 4, 5, generator=generator)
    labels = torch.randint(0, 3, (2, 4, 5), generator=generator)
    labels[0, 0] = 255
    labels[1, :, 1] = 255
    return logits, labels


def test_class_weighted_mean_over_pixels_not_ignored():
    """mmseg 1.2.2's own loss raises IndexError on a 255 pixel with class
    weights; ours is F.cross_entropy's weighted mean."""
    logits, labels = logits_and_labels()
    weight = [0.5, 2.0, 1.0]
    loss = ClassWeightedCrossEntropyLoss(class_weight=weight)(
        logits, labels, ignore_index=255)
    expected = F.cross_entropy(
        logits, labels, weight=torch.tensor(weight), ignore_index=255)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(IndexError):
        CrossEntropyLoss(class_weight=weight)(logits, labels,
                                              ignore_index=255)


def test_unweighted_mean_over_pixels_not_ignored():
    """mmseg's default divides by every pixel, ignored ones included."""
    logits, labels = logits_and_labels()
    ours = ClassWeightedCrossEntropyLoss()(logits, labels, ignore_index=255)
    expected = F.cross_entropy(logits, labels, ignore_index=255)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)
    valid = (labels != 255).sum().item()
    mmseg_default = CrossEntropyLoss()(logits, labels, ignore_index=255)
    assert mmseg_default.item() == pytest.approx(
        expected.item() * valid / labels.numel(), rel=1e-5)


@pytest.mark.parametrize('class_weight', [None, [0.5, 2.0, 1.0]])
def test_sampler_weights_average_over_the_kept_pixels(class_weight):
    """A 0/1 pixel weight (OHEM's) restricts the mean to the kept pixels:
    the loss equals F.cross_entropy with the dropped pixels ignored."""
    logits, labels = logits_and_labels(1)
    kept = torch.zeros_like(labels, dtype=torch.float32)
    kept[:, 1:3, 2:] = 1.0
    ours = ClassWeightedCrossEntropyLoss(class_weight=class_weight)(
        logits, labels, weight=kept, ignore_index=255)
    dropped_as_ignored = labels.masked_fill(kept == 0, 255)
    expected = F.cross_entropy(
        logits,
        dropped_as_ignored,
        weight=None if class_weight is None else torch.tensor(class_weight),
        ignore_index=255)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_decode_head_with_ohem_averages_over_the_kept_pixels():
    """Through mmseg's decode head and OHEMPixelSampler, the supervised loss
    is the mean over the pixels OHEM keeps; mmseg's CrossEntropyLoss gives
    that mean times kept / all pixels."""
    torch.manual_seed(0)
    losses = {}
    for name, loss_cfg in (('ours', 'ClassWeightedCrossEntropyLoss'),
                           ('mmseg', 'CrossEntropyLoss')):
        head = FCNHead(
            in_channels=4,
            channels=4,
            num_convs=1,
            num_classes=3,
            sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=8),
            loss_decode=dict(type=loss_cfg))
        head.init_weights()
        generator = torch.Generator().manual_seed(0)
        seg_logits = torch.randn(2, 3, 6, 6, generator=generator)
        gt = torch.randint(0, 3, (2, 1, 6, 6), generator=generator)
        gt[0, 0, :2] = 255
        samples = [
            SegDataSample(gt_sem_seg=PixelData(data=g)) for g in gt
        ]
        losses[name] = head.loss_by_feat(seg_logits, samples)['loss_ce']
        kept = head.sampler.sample(seg_logits, gt) > 0
    labels = gt.squeeze(1)
    expected = F.cross_entropy(
        seg_logits, labels.masked_fill(~kept, 255), ignore_index=255)
    assert 0 < kept.sum() < (labels != 255).sum()
    assert losses['ours'].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses['mmseg'].item() == pytest.approx(
        expected.item() * kept.sum().item() / labels.numel(), rel=1e-5)


def test_all_pixel_mean_is_refused():
    with pytest.raises(ValueError, match='avg_non_ignore=False'):
        ClassWeightedCrossEntropyLoss(avg_non_ignore=False)
