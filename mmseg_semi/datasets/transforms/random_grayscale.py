"""Random conversion to a three-channel greyscale image."""
import mmcv
from mmseg.registry import TRANSFORMS

from .base_photometric import BasePhotometricTransform


@TRANSFORMS.register_module()
class RandomGrayscale(BasePhotometricTransform):
    """Replace the image by its greyscale version, repeated on 3 channels.

    The grey level is ITU-R 601 luma of the BGR image (mmcv's
    ``bgr2gray``); keeping three channels lets the rest of the pipeline and
    the model treat the image like any other.

    Args:
        prob (float): Probability of converting. Defaults to 0.2.
    """

    def __init__(self, prob=0.2):
        super().__init__(prob)

    def augment(self, img):
        """Return the 3-channel greyscale version of ``img``."""
        return mmcv.gray2bgr(mmcv.bgr2gray(img))
