"""Batch CutMix for the strong view of unlabeled images.

One rectangle per image is pasted from another image of the batch, and the
same rectangle of every per-pixel map (pseudo-label, validity mask, entropy,
...) moves with it, so the student's mixed image and its mixed targets stay
aligned. Everything is vectorised over the batch, runs on the inputs' device
and performs no host synchronisation.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...utils.arg_checks import check_number, check_range

# UniMatch / U2PL-style CutMix: the box covers 2% to 40% of the image and
# its height/width ratio lies in [0.3, 1 / 0.3].
DEFAULT_AREA_RATIO_RANGE = (0.02, 0.4)
DEFAULT_ASPECT_RATIO_RANGE = (0.3, 1 / 0.3)


def sample_cutmix_boxes(
    batch_size: int,
    height: int,
    width: int,
    area_ratio_range: Sequence[float] = DEFAULT_AREA_RATIO_RANGE,
    aspect_ratio_range: Sequence[float] = DEFAULT_ASPECT_RATIO_RANGE,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> Tensor:
    """Sample one CutMix box per image.

    The box area is ``a * height * width`` with ``a`` uniform in
    ``area_ratio_range``; its height/width ratio ``r`` is log-uniform in
    ``aspect_ratio_range`` so tall and wide boxes are equally likely. A box
    that would be taller (wider) than the image is clipped to the image
    height (width) and widened (heightened) to keep its area, instead of
    being re-drawn, which keeps sampling loop-free. Sides are rounded to
    whole pixels (area exact up to one row/column) and the box position is
    uniform over all positions where it fits.

    Args:
        batch_size: Number of boxes.
        height: Image height in pixels.
        width: Image width in pixels.
        area_ratio_range: Range of box area / image area, within (0, 1].
        aspect_ratio_range: Range of box height / box width, > 0.
        generator: Optional RNG, for reproducible boxes.
        device: Device of the result; defaults to the generator's device,
            else CPU.

    Returns:
        Long tensor of shape (batch_size, 4) holding ``(x1, y1, x2, y2)``
        with exclusive ends, i.e. rows ``y1:y2`` and columns ``x1:x2``.
    """
    if batch_size < 0 or height < 1 or width < 1:
        raise ValueError('batch_size must be >= 0 and height, width >= 1, '
                         f'got {batch_size}, {height}, {width}')
    area_low, area_high = check_range('area_ratio_range', area_ratio_range,
                                      0, 1, low_open=True)
    aspect_low, aspect_high = check_range(
        'aspect_ratio_range', aspect_ratio_range, low=0, low_open=True)
    uniforms = draw_uniforms((batch_size, 4), generator, device,
                             torch.float64)
    area = (area_low + (area_high - area_low) * uniforms[:, 0]) \
        * (height * width)
    log_aspect = math.log(aspect_low) + \
        (math.log(aspect_high) - math.log(aspect_low)) * uniforms[:, 1]
    box_heights, box_widths = box_sides(area, log_aspect.exp(), height,
                                        width)
    y1 = (uniforms[:, 2] * (height - box_heights + 1)).floor().long()
    x1 = (uniforms[:, 3] * (width - box_widths + 1)).floor().long()
    # rand() is < 1, but guard the float64 product against rounding up.
    y1 = torch.minimum(y1, height - box_heights)
    x1 = torch.minimum(x1, width - box_widths)
    return torch.stack([x1, y1, x1 + box_widths, y1 + box_heights], dim=1)


def draw_uniforms(shape: Tuple[int, ...],
                  generator: Optional[torch.Generator],
                  device: Optional[torch.device],
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Uniform [0, 1) samples from ``generator``, placed on ``device``.

    A generator only draws on its own device, so the samples are drawn
    there and copied to ``device`` (a host-to-device copy at most, never a
    device-to-host read); ``device`` defaults to the generator's device,
    else CPU.
    """
    draw_device = generator.device if generator is not None else device
    uniforms = torch.rand(
        shape, generator=generator, device=draw_device, dtype=dtype)
    return uniforms if device is None else uniforms.to(device)


def box_sides(area: Tensor, aspect: Tensor, height: int,
              width: int) -> Tuple[Tensor, Tensor]:
    """Integer box sides of the given areas and height/width ratios.

    Args:
        area: Target box areas in pixels, float, shape (B,).
        aspect: Target height / width ratios, shape (B,).
        height: Image height, the largest allowed box height.
        width: Image width, the largest allowed box width.

    Returns:
        Long tensors ``(box_heights, box_widths)``, each in [1, side].
    """
    box_height = (area * aspect).sqrt().clamp(max=height)
    # A box wider than the image is made taller instead; area <= H * W
    # guarantees that this height still fits.
    box_height = torch.maximum(box_height, area / width)
    box_height = box_height.round().clamp(1, height)
    box_width = (area / box_height).round().clamp(1, width)
    return box_height.long(), box_width.long()


def boxes_to_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Rasterise ``(x1, y1, x2, y2)`` boxes into a (B, H, W) bool mask."""
    rows = torch.arange(height, device=boxes.device).view(1, height, 1)
    cols = torch.arange(width, device=boxes.device).view(1, 1, width)
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    return (rows >= y1) & (rows < y2) & (cols >= x1) & (cols < x2)


def resize_mask(mask: Tensor, size) -> Tensor:
    """Nearest resize of a (B, H, W) bool mask (e.g. a CutMix box mask to
    a feature map's size)."""
    if tuple(mask.shape[1:]) == tuple(size):
        return mask
    return F.interpolate(
        mask[:, None].float(), size=tuple(size), mode='nearest')[:, 0] > 0.5


def paste_from(target: Tensor, source_index: Tensor, mask: Tensor) -> Tensor:
    """Replace masked pixels of each sample by those of another sample.

    Args:
        target: Tensor of shape (B, ..., H, W), any dtype.
        source_index: Long tensor (B,), sample i takes from
            ``source_index[i]``.
        mask: Bool tensor (B, H, W), True where pixels are replaced.

    Returns:
        The mixed tensor, same shape and dtype as ``target``.
    """
    leading_ones = [1] * (target.dim() - 3)
    mask = mask.view(mask.shape[0], *leading_ones, *mask.shape[1:])
    return torch.where(mask, target[source_index], target)


def check_mixable(images: Tensor, pixel_maps: Sequence[Tensor]) -> None:
    """Check images are (B, C, H, W) and every map is (B, ..., H, W)."""
    if images.dim() != 4:
        raise ValueError('images must have shape (B, C, H, W), got '
                         f'{tuple(images.shape)}')
    batch_size, _, height, width = images.shape
    for index, pixel_map in enumerate(pixel_maps):
        if pixel_map.dim() < 3 or pixel_map.shape[0] != batch_size \
                or tuple(pixel_map.shape[-2:]) != (height, width):
            raise ValueError(
                f'pixel map {index} must have shape ({batch_size}, ..., '
                f'{height}, {width}) to match images, got '
                f'{tuple(pixel_map.shape)}')


def cutmix_batch(
    images: Tensor,
    *pixel_maps: Tensor,
    boxes: Optional[Tensor] = None,
    perm: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    prob: float = 1.0,
    area_ratio_range: Sequence[float] = DEFAULT_AREA_RATIO_RANGE,
    aspect_ratio_range: Sequence[float] = DEFAULT_ASPECT_RATIO_RANGE,
) -> Tuple[Tensor, Tuple[Tensor, ...], Tensor, Tensor]:
    """CutMix a batch: paste a box of image ``perm[i]`` into image ``i``.

    The same box region of every pixel map moves with the image, so
    pseudo-labels, masks and any other per-pixel maps stay aligned with
    the mixed images. Mixing is a ``torch.where`` with a broadcast box mask,
    so gradients flow to both the kept and the pasted pixels of ``images``.

    Args:
        images: Images of shape (B, C, H, W).
        *pixel_maps: Per-pixel maps of shape (B, H, W) or (B, C', H, W), of
            any dtype (long labels, bool masks, float entropy, ...).
        boxes: Optional (B, 4) long boxes ``(x1, y1, x2, y2)`` with
            exclusive ends; sampled with :func:`sample_cutmix_boxes` when
            None.
        perm: Optional (B,) long tensor, image i takes its box from image
            ``perm[i]``. Defaults to rolling the batch by one
            (``perm[i] = (i + 1) % B``, as U2PL does), which never pairs an
            image with itself when B > 1 and needs no randomness.
        generator: Optional RNG for the boxes and the per-sample coin.
        prob: Probability that a sample is mixed; unmixed samples are left
            unchanged and get an empty box ``(0, 0, 0, 0)``.
        area_ratio_range: Box area range used when sampling boxes.
        aspect_ratio_range: Box aspect ratio range used when sampling boxes.

    Returns:
        Tuple ``(mixed_images, mixed_maps, boxes, perm)``: ``mixed_maps`` is
        a tuple in the order of ``pixel_maps``; ``boxes`` are the boxes
        actually pasted (empty for unmixed samples) and ``perm`` the source
        indices, both on the images' device.
    """
    check_number('prob', prob, 0, 1)
    check_mixable(images, pixel_maps)
    batch_size, _, height, width = images.shape
    device = images.device
    if boxes is None:
        boxes = sample_cutmix_boxes(batch_size, height, width,
                                    area_ratio_range, aspect_ratio_range,
                                    generator=generator, device=device)
    elif tuple(boxes.shape) != (batch_size, 4):
        raise ValueError(f'boxes must have shape ({batch_size}, 4), got '
                         f'{tuple(boxes.shape)}')
    boxes = boxes.to(device=device, dtype=torch.long)
    if perm is None:
        perm = torch.arange(batch_size, device=device).roll(-1)
    elif tuple(perm.shape) != (batch_size, ):
        raise ValueError(f'perm must have shape ({batch_size},), got '
                         f'{tuple(perm.shape)}')
    perm = perm.to(device=device, dtype=torch.long)
    boxes = drop_unmixed_boxes(boxes, prob, generator)
    mask = boxes_to_mask(boxes, height, width)
    mixed_images = paste_from(images, perm, mask)
    mixed_maps = tuple(paste_from(m, perm, mask) for m in pixel_maps)
    return mixed_images, mixed_maps, boxes, perm


def drop_unmixed_boxes(boxes: Tensor, prob: float,
                       generator: Optional[torch.Generator]) -> Tensor:
    """Zero the boxes of samples that lose a ``prob`` coin toss.

    No coin is drawn when ``prob`` is 0 or 1, so the RNG stream then only
    depends on the boxes.
    """
    if prob >= 1:
        return boxes
    if prob <= 0:
        return torch.zeros_like(boxes)
    mixed = draw_uniforms((boxes.shape[0], ), generator,
                          boxes.device) < prob
    return boxes * mixed.unsqueeze(1)


def mix_with_box_mask(cutmix: Optional[dict], strong: Tensor,
                      *pixel_maps: Tensor
                      ) -> Tuple[Tensor, Tuple[Tensor, ...],
                                 Optional[Tuple[Tensor, Tensor]]]:
    """CutMix the strong view and its per-pixel maps with one set of boxes.

    ``cutmix`` holds :func:`cutmix_batch`'s options. Returns the mixed
    image, the mixed maps, and ``(box_mask, perm)`` to move maps at another
    resolution (e.g. representations) the same way; without CutMix
    (``cutmix=None``) the inputs and None.
    """
    if cutmix is None:
        return strong, pixel_maps, None
    strong, maps, boxes, perm = cutmix_batch(strong, *pixel_maps, **cutmix)
    return strong, maps, (boxes_to_mask(boxes, *strong.shape[2:]), perm)
