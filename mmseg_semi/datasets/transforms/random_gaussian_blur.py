"""Gaussian blur with a random standard deviation."""
import math

import cv2
import numpy as np
from mmseg.registry import TRANSFORMS

from ...utils.arg_checks import check_range
from .base_photometric import BasePhotometricTransform


def blur_kernel_size(sigma):
    """Return the odd kernel size that covers +-3 sigma of a Gaussian."""
    return 2 * math.ceil(3 * sigma) + 1


@TRANSFORMS.register_module()
class RandomGaussianBlur(BasePhotometricTransform):
    """Blur the image with a Gaussian of random standard deviation.

    ``sigma`` is drawn uniformly from ``sigma_range`` and the square kernel
    has size ``2 * ceil(3 * sigma) + 1`` so it holds more than 99% of the
    Gaussian's mass whatever sigma is drawn. Borders are reflected, so the
    image size does not change.

    Args:
        sigma_range (tuple[float, float]): Range of the standard deviation
            in pixels. Defaults to (0.1, 2.0).
    """

    def __init__(self, sigma_range=(0.1, 2.0)):
        self.sigma_range = check_range('sigma_range', sigma_range, low=0,
                                       low_open=True)

    def augment(self, img):
        """Blur ``img`` with a Gaussian of random sigma."""
        sigma = np.random.uniform(*self.sigma_range)
        size = blur_kernel_size(sigma)
        return cv2.GaussianBlur(
            img, (size, size),
            sigmaX=sigma,
            sigmaY=sigma,
            borderType=cv2.BORDER_REFLECT_101)

    def __repr__(self):
        return f'{type(self).__name__}(sigma_range={self.sigma_range})'
