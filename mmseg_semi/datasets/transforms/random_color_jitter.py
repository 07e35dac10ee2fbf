"""Colour jitter (brightness, contrast, saturation, hue) for uint8 BGR."""
from numbers import Real

import cv2
import mmcv
import numpy as np
from mmseg.registry import TRANSFORMS

from ...utils.arg_checks import check_number, check_range
from .base_photometric import BasePhotometricTransform


def factor_range(value, name):
    """Turn a jitter strength into a multiplicative factor range.

    Args:
        value (float | tuple[float, float]): ``s`` gives
            ``(max(0, 1 - s), 1 + s)``; a pair is used as given.
        name (str): Argument name used in error messages.

    Returns:
        tuple[float, float] | None: The range, or None when the op is off.
    """
    if isinstance(value, Real):
        check_number(name, value, low=0)
        low, high = max(0.0, 1.0 - value), 1.0 + value
    else:
        low, high = check_range(name, value, low=0)
    return None if low == high == 1.0 else (float(low), float(high))


def hue_shift_range(value):
    """Turn a hue strength into a range of hue shifts (fractions of a turn).

    Args:
        value (float | tuple[float, float]): ``h`` gives ``(-h, h)``; a pair
            is used as given. Shifts must lie in [-0.5, 0.5].

    Returns:
        tuple[float, float] | None: The range, or None when the op is off.
    """
    if isinstance(value, Real):
        check_number('hue', value, 0, 0.5)
        low, high = -value, value
    else:
        low, high = check_range('hue', value, -0.5, 0.5)
    return None if low == high == 0 else (float(low), float(high))


def adjust_saturation(img, factor):
    """Blend ``img`` with its greyscale version; 0 gives grey, 1 the input."""
    return mmcv.adjust_color(img, alpha=factor)


def shift_hue(img, shift):
    """Rotate the hue of a BGR uint8 image by ``shift`` of a full turn.

    OpenCV's full-range HSV stores hue in 0..255, so a shift is a modular
    addition on that channel, done with a lookup table.

    Args:
        img (np.ndarray): HxWx3 uint8 BGR image.
        shift (float): Hue rotation as a fraction of a turn, in [-0.5, 0.5].

    Returns:
        np.ndarray: The hue-shifted uint8 BGR image.
    """
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL)
    offset = int(round(shift * 256))
    hue_table = ((np.arange(256) + offset) % 256).astype(np.uint8)
    hsv[..., 0] = cv2.LUT(hsv[..., 0], hue_table)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL)


@TRANSFORMS.register_module()
class RandomColorJitter(BasePhotometricTransform):
    """Randomly change brightness, contrast, saturation and hue.

    Follows torchvision's ``ColorJitter``: each enabled op draws a factor
    uniformly from its range, and the four ops run in a random order.
    Brightness blends with black, contrast with the mean grey level,
    saturation with the greyscale image (mmcv's ``adjust_brightness``,
    ``adjust_contrast`` and ``adjust_color``); hue is rotated in HSV space.
    Only pixel values change; geometry and masks are untouched.

    Args:
        brightness (float | tuple[float, float]): Strength ``s`` giving
            factors in ``[max(0, 1 - s), 1 + s]``, or an explicit range.
            0 disables the op. Defaults to 0.5.
        contrast (float | tuple[float, float]): As ``brightness``.
            Defaults to 0.5.
        saturation (float | tuple[float, float]): As ``brightness``.
            Defaults to 0.5.
        hue (float | tuple[float, float]): Strength ``h`` giving hue shifts
            in ``[-h, h]`` (fractions of a turn, within [-0.5, 0.5]), or an
            explicit range. Defaults to 0.25.
    """

    def __init__(self,
                 brightness=0.5,
                 contrast=0.5,
                 saturation=0.5,
                 hue=0.25):
        self.brightness = factor_range(brightness, 'brightness')
        self.contrast = factor_range(contrast, 'contrast')
        self.saturation = factor_range(saturation, 'saturation')
        self.hue = hue_shift_range(hue)

    def augment(self, img):
        """Apply the enabled ops in a random order with random factors."""
        ops = [
            (self.brightness, mmcv.adjust_brightness),
            (self.contrast, mmcv.adjust_contrast),
            (self.saturation, adjust_saturation),
            (self.hue, shift_hue),
        ]
        for op_index in np.random.permutation(len(ops)):
            value_range, apply_op = ops[op_index]
            if value_range is not None:
                img = apply_op(img, np.random.uniform(*value_range))
        return img

    def __repr__(self):
        return (f'{type(self).__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, '
                f'hue={self.hue})')
