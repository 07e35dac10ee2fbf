"""Tests for MultiBranch and the strong photometric augmentations."""
import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmseg.registry import TRANSFORMS

from mmseg_semi.datasets.transforms import (PHOTOMETRIC_OPS, MultiBranch,
                                            RandAugmentPhotometric,
                                            RandomColorJitter,
                                            RandomGaussianBlur)
from mmseg_semi.datasets.transforms.random_gaussian_blur import \
    blur_kernel_size

CROP = 16
GEOMETRY = [
    dict(type='RandomResize', scale=(48, 32), ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(CROP, CROP), cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
]
PACK = dict(type='PackSegInputs')
#: mmcv's RandomGrayscale as the configs use it (BGR luma, 3 channels).
GRAY = dict(type='RandomGrayscale', prob=1.0, keep_channels=True,
            channel_weights=(0.114, 0.587, 0.299))
GRAY_STRONG = [GRAY, PACK]
SHARED_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'scale_factor',
                    'flip', 'flip_direction')


def random_image(height=24, width=32, seed=0):
    """A reproducible random HxWx3 uint8 image."""
    return np.random.RandomState(seed).randint(
        0, 256, (height, width, 3), dtype=np.uint8)


def write_sample(tmp_path, with_mask=False):
    """Write an image (and optionally a mask) PNG; return loader inputs."""
    img_path = str(tmp_path / 'img.png')
    cv2.imwrite(img_path, random_image())
    results = dict(img_path=img_path, seg_fields=[], reduce_zero_label=False)
    if with_mask:
        # Label = column index // 4, so any crop/flip shows up in the mask.
        mask = np.tile(np.arange(32, dtype=np.uint8) // 4, (24, 1))
        results['seg_map_path'] = str(tmp_path / 'mask.png')
        cv2.imwrite(results['seg_map_path'], mask)
    return results


def run_pipeline(cfgs, results):
    """Build ``cfgs`` with mmseg's registry and run them on ``results``."""
    for transform in [TRANSFORMS.build(cfg) for cfg in cfgs]:
        results = transform(results)
    return results


def branch_pipeline(strong_branch, load=('LoadImageFromFile', )):
    """Loading + shared geometry + weak/strong MultiBranch configs."""
    return [dict(type=name) for name in load] + GEOMETRY + [
        dict(type='MultiBranch',
             branches=dict(weak=[PACK], strong=strong_branch))
    ]


def test_unlabeled_views_share_geometry_without_masks(tmp_path):
    np.random.seed(0)
    out = run_pipeline(branch_pipeline(GRAY_STRONG), write_sample(tmp_path))
    assert set(out) == {'inputs', 'data_samples'}
    weak, strong = out['inputs']['weak'], out['inputs']['strong']
    assert weak.shape == strong.shape == (3, CROP, CROP)
    assert weak.dtype == strong.dtype == torch.uint8
    # Grayscale changed the pixels, not the geometry.
    assert not torch.equal(weak, strong)
    assert torch.equal(strong[0], strong[1]) and torch.equal(
        strong[1], strong[2])
    weak_sample = out['data_samples']['weak']
    strong_sample = out['data_samples']['strong']
    for key in SHARED_META_KEYS:
        assert weak_sample.metainfo[key] == strong_sample.metainfo[key], key
    assert weak_sample.metainfo['branch'] == 'weak'
    assert strong_sample.metainfo['branch'] == 'strong'
    assert 'gt_sem_seg' not in weak_sample
    assert 'gt_sem_seg' not in strong_sample


def test_identity_strong_branch_matches_weak_pixels(tmp_path):
    identity = [
        dict(type='RandAugmentPhotometric', ops=('identity', ), num_ops=3),
        PACK
    ]
    for seed in range(3):
        np.random.seed(seed)
        out = run_pipeline(branch_pipeline(identity), write_sample(tmp_path))
        assert torch.equal(out['inputs']['weak'], out['inputs']['strong'])


def test_labeled_views_keep_identical_ground_truth(tmp_path):
    pipeline = branch_pipeline(
        [dict(type='RandomColorJitter'), PACK],
        load=('LoadImageFromFile', 'LoadAnnotations'))
    flips = set()
    # Seeds 0 and 1 give an unflipped and a flipped sample.
    for seed in (0, 1):
        np.random.seed(seed)
        out = run_pipeline(pipeline, write_sample(tmp_path, with_mask=True))
        weak_gt = out['data_samples']['weak'].gt_sem_seg.data
        strong_gt = out['data_samples']['strong'].gt_sem_seg.data
        assert weak_gt.shape == (1, CROP, CROP)
        assert torch.equal(weak_gt, strong_gt)
        assert not torch.equal(out['inputs']['weak'], out['inputs']['strong'])
        # Labels grow with the column, so a row of the cropped mask rises
        # unless the recorded flip happened, in which case it falls.
        steps = weak_gt[0, 0, 1:] - weak_gt[0, 0, :-1]
        flipped = out['data_samples']['weak'].metainfo['flip']
        flips.add(flipped)
        assert steps.any()
        assert (steps <= 0).all() if flipped else (steps >= 0).all()
    assert flips == {False, True}


def test_pipeline_is_deterministic_under_numpy_seed(tmp_path):
    strong = [
        dict(type='RandomColorJitter'),
        dict(type='RandomGaussianBlur'),
        dict(type='RandAugmentPhotometric'), PACK
    ]

    def run(seed):
        np.random.seed(seed)
        return run_pipeline(branch_pipeline(strong), write_sample(tmp_path))

    first, second, other = run(7), run(7), run(8)
    for name in ('weak', 'strong'):
        assert torch.equal(first['inputs'][name], second['inputs'][name])
    assert not torch.equal(first['inputs']['strong'],
                           other['inputs']['strong'])


def test_branches_do_not_mutate_input_results():
    img = random_image()
    results = dict(img=img.copy(), img_shape=img.shape[:2])
    MultiBranch(branches=dict(a=GRAY_STRONG, b=[PACK]))(results)
    assert np.array_equal(results['img'], img)
    assert set(results) == {'img', 'img_shape'}


def test_pseudo_collate_groups_views_by_branch():
    transform = MultiBranch(branches=dict(weak=[PACK], strong=GRAY_STRONG))
    samples = [transform(dict(img=random_image(seed=s))) for s in range(2)]
    batch = pseudo_collate(samples)
    assert set(batch) == {'inputs', 'data_samples'}
    for part in batch.values():
        assert set(part) == {'weak', 'strong'}
        assert all(len(items) == 2 for items in part.values())
    assert torch.equal(batch['inputs']['weak'][1],
                       samples[1]['inputs']['weak'])
    assert batch['data_samples']['strong'][0].metainfo['branch'] == 'strong'


def test_branch_without_packing_names_the_branch():
    transform = MultiBranch(
        branches=dict(weak=[PACK], unpacked=[dict(type='RandomGrayscale')]))
    with pytest.raises(KeyError, match="'unpacked'.*PackSegInputs"):
        transform(dict(img=random_image()))


def test_rejecting_branch_returns_none():
    transform = MultiBranch(
        branches=dict(weak=[PACK], strong=[lambda results: None, PACK]))
    assert transform(dict(img=random_image())) is None


def test_invalid_branch_configs_raise():
    with pytest.raises(TypeError, match='non-empty dict'):
        MultiBranch(branches={})
    with pytest.raises(TypeError, match="'strong'"):
        MultiBranch(branches=dict(strong=[]))


def constant_image(value, height=4, width=5):
    """An image whose every channel of every pixel equals ``value``."""
    return np.full((height, width, 3), value, dtype=np.uint8)


def apply(transform, img):
    """Run a photometric transform on a bare results dict; return img."""
    return transform(dict(img=img))['img']


def test_configs_grayscale_is_luma_on_three_equal_channels():
    """mmcv's RandomGrayscale as the strong views use it: ITU-R 601 luma of
    the BGR image (0.299 R + 0.587 G + 0.114 B, truncated), 3 channels."""
    img = np.array([[[0, 0, 255], [255, 0, 0], [10, 200, 30]]], np.uint8)
    gray = apply(TRANSFORMS.build(GRAY), img)
    assert gray.shape == img.shape
    assert gray[..., 0].tolist() == [[76, 29, 127]]
    assert (gray == gray[..., :1]).all()


def test_color_jitter_single_ops_by_hand():
    brightness = RandomColorJitter(
        brightness=(0.5, 0.5), contrast=0, saturation=0, hue=0)
    assert (apply(brightness, constant_image(100)) == 50).all()
    contrast = RandomColorJitter(
        brightness=0, contrast=(0.0, 0.0), saturation=0, hue=0)
    two_levels = np.concatenate([constant_image(40), constant_image(80)])
    assert (apply(contrast, two_levels) == 60).all()
    saturation = RandomColorJitter(
        brightness=0, contrast=0, saturation=(0.0, 0.0), hue=0)
    desaturated = apply(saturation, random_image(4, 5))
    assert (desaturated == desaturated[..., :1]).all()


@pytest.mark.parametrize('shift', [0.5, -0.5])
def test_hue_half_turn_maps_red_to_cyan(shift):
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 255
    hue = RandomColorJitter(
        brightness=0, contrast=0, saturation=0, hue=(shift, shift))
    # OpenCV's 8-bit hue is quantised, so cyan is reached within 1.5%.
    cyan = apply(hue, red).astype(int)
    assert (np.abs(cyan - [255, 255, 0]) <= 4).all()


def test_color_jitter_factors_stay_in_range():
    jitter = RandomColorJitter(
        brightness=0.5, contrast=0, saturation=0, hue=0)
    np.random.seed(0)
    values = {int(apply(jitter, constant_image(100))[0, 0, 0])
              for _ in range(50)}
    assert min(values) >= 50 and max(values) <= 150 and len(values) > 10


def test_gaussian_blur_matches_opencv_and_keeps_constants():
    assert blur_kernel_size(0.1) == 3 and blur_kernel_size(2.0) == 13
    impulse = np.zeros((15, 15, 3), np.uint8)
    impulse[7, 7] = 255
    blurred = apply(RandomGaussianBlur((1.0, 1.0)), impulse)
    expected = cv2.GaussianBlur(impulse, (7, 7), 1.0,
                                borderType=cv2.BORDER_REFLECT_101)
    assert np.array_equal(blurred, expected)
    assert 0 < blurred[7, 7, 0] < 255 and blurred[7, 8, 0] > 0
    assert np.array_equal(blurred[:, ::-1], blurred)  # symmetric spread
    flat = apply(RandomGaussianBlur(), constant_image(90, 9, 9))
    assert (flat == 90).all()


def rand_augment_one(op, magnitude):
    """RandAugmentPhotometric that applies exactly ``op`` once."""
    return RandAugmentPhotometric(
        num_ops=1, magnitude_range=(magnitude, magnitude), ops=(op, ))


def test_rand_augment_ops_by_hand():
    pixels = np.array([[[100, 128, 200]]], np.uint8)
    # Threshold 256 - 128 = 128: values >= 128 are inverted.
    solarized = apply(rand_augment_one('solarize', 0.5), pixels)
    assert solarized.tolist() == [[[100, 127, 55]]]
    assert np.array_equal(apply(rand_augment_one('solarize', 0.0), pixels),
                          pixels)
    # Magnitude 1 keeps 4 bits: 183 = 0b10110111 -> 0b10110000 = 176.
    posterized = apply(rand_augment_one('posterize', 1.0), constant_image(183))
    assert (posterized == 176).all()
    np.random.seed(0)
    brightened = {int(apply(rand_augment_one('brightness', 0.5),
                            constant_image(100))[0, 0, 0]) for _ in range(20)}
    assert brightened == {55, 145}
    ramp = np.repeat(np.linspace(50, 150, 20).astype(np.uint8), 3)
    stretched = apply(rand_augment_one('autocontrast', 0.3),
                      ramp.reshape(4, 5, 3))
    assert stretched.min() == 0 and stretched.max() == 255
    assert np.array_equal(apply(rand_augment_one('identity', 1.0), pixels),
                          pixels)


def test_rand_augment_rejects_unknown_ops():
    with pytest.raises(ValueError, match='rotate'):
        RandAugmentPhotometric(ops=('rotate', 'equalize'))


ALL_PHOTOMETRIC = [
    RandomColorJitter,
    RandomGaussianBlur,
    lambda: RandAugmentPhotometric(num_ops=len(PHOTOMETRIC_OPS)),
]


@pytest.mark.parametrize('make', ALL_PHOTOMETRIC)
def test_photometric_ops_keep_shape_dtype_and_masks(make):
    np.random.seed(0)
    img = random_image(12, 10)
    mask = np.arange(120, dtype=np.uint8).reshape(12, 10)
    results = make()(dict(img=img.copy(), gt_seg_map=mask.copy(),
                          seg_fields=['gt_seg_map'], img_shape=(12, 10)))
    assert results['img'].shape == img.shape
    assert results['img'].dtype == np.uint8
    assert not np.array_equal(results['img'], img)
    assert np.array_equal(results['gt_seg_map'], mask)
    assert results['img_shape'] == (12, 10)


@pytest.mark.parametrize('make', ALL_PHOTOMETRIC)
def test_photometric_ops_reject_bad_images(make):
    with pytest.raises(KeyError, match="'img'"):
        make()(dict(img_shape=(4, 4)))
    with pytest.raises(ValueError, match='uint8'):
        make()(dict(img=np.zeros((4, 4, 3), np.float32)))
