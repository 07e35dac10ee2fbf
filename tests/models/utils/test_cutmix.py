"""Tests for batch CutMix (mmseg_semi.models.utils.cutmix)."""
import pytest
import torch

from mmseg_semi.models.utils import cutmix_batch, sample_cutmix_boxes

BATCH, CHANNELS, HEIGHT, WIDTH = 3, 2, 5, 6
# (x1, y1, x2, y2), exclusive ends: an inner box, the whole image, one pixel.
BOXES = torch.tensor([[1, 2, 4, 5], [0, 0, 6, 5], [2, 1, 3, 2]])
PERM = torch.tensor([2, 0, 1])


def encoded_images():
    """Float images whose value encodes (sample, channel, y, x)."""
    s, c, y, x = torch.meshgrid(
        torch.arange(BATCH), torch.arange(CHANNELS), torch.arange(HEIGHT),
        torch.arange(WIDTH), indexing='ij')
    return (s * 10000 + c * 1000 + y * 10 + x).float()


def encoded_labels():
    """Long labels whose value encodes (sample, y, x)."""
    s, y, x = torch.meshgrid(
        torch.arange(BATCH), torch.arange(HEIGHT), torch.arange(WIDTH),
        indexing='ij')
    return s * 100 + y * 10 + x


def reference_cutmix(tensor, boxes, perm):
    """Loop-based CutMix used as the expected result."""
    mixed = tensor.clone()
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        mixed[i, ..., y1:y2, x1:x2] = tensor[perm[i], ..., y1:y2, x1:x2]
    return mixed


def test_box_pixels_come_from_permuted_sample():
    images, labels = encoded_images(), encoded_labels()
    # Sample 1 is all True, the others all False, so pasted pixels show.
    valid = torch.zeros(BATCH, HEIGHT, WIDTH, dtype=torch.bool)
    valid[1] = True
    mixed_images, (mixed_labels, mixed_valid), boxes, perm = cutmix_batch(
        images, labels, valid, boxes=BOXES, perm=PERM)

    # Hand-checked pixels of image 0 (box rows 2:5, cols 1:4, from image 2).
    assert mixed_images[0, 1, 2, 1] == 2 * 10000 + 1000 + 20 + 1
    assert mixed_images[0, 1, 1, 1] == 1000 + 10 + 1  # row 1 is outside
    assert mixed_labels[0, 4, 3] == 200 + 40 + 3
    assert mixed_labels[0, 4, 4] == 44  # column 4 is outside
    # Image 1's box is the whole image: it becomes image 0 entirely.
    assert torch.equal(mixed_images[1], images[0])
    assert not mixed_valid[1].any()
    # Image 2 takes exactly one pixel (y=1, x=2) from image 1.
    assert torch.equal(mixed_valid[2], (labels[0] == 12))
    assert mixed_labels[2, 1, 2] == 112
    assert (mixed_labels[2] != labels[2]).sum() == 1

    assert torch.equal(mixed_images, reference_cutmix(images, BOXES, PERM))
    assert torch.equal(mixed_labels, reference_cutmix(labels, BOXES, PERM))
    assert torch.equal(mixed_valid, reference_cutmix(valid, BOXES, PERM))
    assert torch.equal(boxes, BOXES) and torch.equal(perm, PERM)


def test_maps_keep_dtype_and_multichannel_maps_mix():
    images = encoded_images()
    entropy = encoded_images() / 7  # (B, C', H, W) float map
    maps = (encoded_labels(), encoded_labels() % 2 == 0, entropy.half())
    _, mixed_maps, _, _ = cutmix_batch(images, *maps, boxes=BOXES, perm=PERM)
    for original, mixed in zip(maps, mixed_maps):
        assert mixed.dtype == original.dtype
        assert mixed.shape == original.shape
        assert torch.equal(mixed, reference_cutmix(original, BOXES, PERM))


def test_default_perm_rolls_batch_by_one():
    images = encoded_images()
    _, _, _, perm = cutmix_batch(images, boxes=BOXES)
    assert perm.tolist() == [1, 2, 0]


def test_prob_zero_is_identity():
    images, labels = encoded_images(), encoded_labels()
    mixed_images, (mixed_labels, ), boxes, _ = cutmix_batch(
        images, labels, boxes=BOXES, perm=PERM, prob=0.0)
    assert torch.equal(mixed_images, images)
    assert torch.equal(mixed_labels, labels)
    assert not boxes.any()


def test_prob_mixes_some_samples_and_leaves_others_unchanged():
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(64, 1, 8, 8, generator=generator)
    boxes = torch.tensor([[0, 0, 4, 4]]).repeat(64, 1)
    mixed, _, used_boxes, perm = cutmix_batch(
        images, boxes=boxes, prob=0.5, generator=generator)
    was_mixed = used_boxes.any(dim=1)
    assert 10 < was_mixed.sum() < 54
    assert torch.equal(mixed[~was_mixed], images[~was_mixed])
    assert torch.equal(used_boxes[was_mixed], boxes[was_mixed])
    assert torch.equal(mixed, reference_cutmix(images, used_boxes, perm))


def test_sampled_box_area_and_placement():
    height, width, low, high = 37, 53, 0.1, 0.3
    boxes = sample_cutmix_boxes(
        2000, height, width, area_ratio_range=(low, high),
        generator=torch.Generator().manual_seed(0))
    assert boxes.dtype == torch.long and boxes.shape == (2000, 4)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    assert (x1 >= 0).all() and (y1 >= 0).all()
    assert (x2 <= width).all() and (y2 <= height).all()
    box_h, box_w = y2 - y1, x2 - x1
    assert (box_h >= 1).all() and (box_w >= 1).all()
    area = (box_h * box_w).float()
    # Rounding a side to whole pixels moves the area by at most half a
    # row or column.
    slack = 0.5 * max(height, width)
    assert (area >= low * height * width - slack).all()
    assert (area <= high * height * width + slack).all()
    # Areas spread over the range, boxes are both tall and wide, and they
    # reach every image border.
    ratios = area / (height * width)
    assert ratios.min() < low + 0.02 and ratios.max() > high - 0.02
    assert (box_h > box_w).any() and (box_h < box_w).any()
    assert (x1 == 0).any() and (x2 == width).any()
    assert (y1 == 0).any() and (y2 == height).any()


def test_u2pl_paper_box_is_half_the_image():
    """The U2PL paper configs' box (issue "Paper fidelity", U2PL item 4):
    U2PL's generate_cutout_mask(ratio=2) pastes a box of half the image
    area with each side between half and all of the image's side. The
    configs' area (0.5, 0.5) and height/width (0.5, 2) on a square crop
    give that box; the default range gives smaller ones."""
    size = 513
    boxes = sample_cutmix_boxes(
        2000, size, size, area_ratio_range=(0.5, 0.5),
        aspect_ratio_range=(0.5, 2.0),
        generator=torch.Generator().manual_seed(0))
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    box_h, box_w = y2 - y1, x2 - x1
    area = (box_h * box_w).float() / size**2
    assert (area - 0.5).abs().max() < 0.5 / size + 1e-6
    for side in (box_h, box_w):
        assert (side >= size // 2).all() and (side <= size).all()
    default = sample_cutmix_boxes(
        2000, size, size, generator=torch.Generator().manual_seed(0))
    default_area = ((default[:, 3] - default[:, 1]) *
                    (default[:, 2] - default[:, 0])).float() / size**2
    assert default_area.max() < 0.41


def test_full_area_box_covers_image():
    boxes = sample_cutmix_boxes(4, 7, 9, area_ratio_range=(1.0, 1.0))
    assert boxes.tolist() == [[0, 0, 9, 7]] * 4


def test_generator_makes_cutmix_deterministic():
    images = torch.randn(4, 3, 16, 16)

    def run(seed):
        return cutmix_batch(
            images, images[:, 0] > 0, prob=0.7,
            generator=torch.Generator().manual_seed(seed))

    first, second, other = run(5), run(5), run(6)
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1][0], second[1][0])
    assert torch.equal(first[2], second[2])
    assert not torch.equal(first[2], other[2])


def test_gradient_flows_to_kept_and_pasted_pixels():
    images = torch.randn(BATCH, CHANNELS, HEIGHT, WIDTH, requires_grad=True)
    mixed, _, _, _ = cutmix_batch(images, boxes=BOXES, perm=PERM)
    mixed.sum().backward()
    # Each input pixel's gradient counts the output pixels that copy it:
    # itself where its own box is not, plus once per image pasting from it.
    inside = torch.zeros(BATCH, HEIGHT, WIDTH)
    for i, (x1, y1, x2, y2) in enumerate(BOXES.tolist()):
        inside[i, y1:y2, x1:x2] = 1
    pasted_from = torch.zeros_like(inside)
    pasted_from.index_add_(0, PERM, inside)
    expected = (1 - inside + pasted_from).unsqueeze(1).expand_as(images)
    assert torch.equal(images.grad, expected)


def test_bad_shapes_raise_clear_errors():
    images = encoded_images()
    with pytest.raises(ValueError, match='pixel map 1'):
        cutmix_batch(images, encoded_labels(), torch.zeros(BATCH, 4, 4))
    with pytest.raises(ValueError, match='boxes'):
        cutmix_batch(images, boxes=BOXES[:2])
    with pytest.raises(ValueError, match='perm'):
        cutmix_batch(images, boxes=BOXES, perm=PERM[:2])
    with pytest.raises(ValueError, match='area_ratio_range'):
        sample_cutmix_boxes(2, 8, 8, area_ratio_range=(0.5, 1.5))
    with pytest.raises(ValueError, match='prob'):
        cutmix_batch(images, prob=1.5)
