"""Shared behaviour of the strong photometric augmentations.

Every strong augmentation in this package only changes pixel values of
``results['img']``. Keeping geometry and masks untouched is what lets the
weak (teacher) and strong (student) views of an unlabeled image share one
pseudo-label without any re-projection.
"""
import numpy as np
from mmcv.transforms import BaseTransform


def check_bgr_uint8_image(results, transform_name):
    """Fetch ``results['img']`` and check it is an HxWx3 uint8 array.

    Args:
        results (dict): Pipeline results.
        transform_name (str): Name of the calling transform for errors.

    Returns:
        np.ndarray: The image.
    """
    if 'img' not in results:
        raise KeyError(f"{transform_name} needs results['img'], but the key "
                       f'is missing (keys: {sorted(results)})')
    img = results['img']
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 \
            or img.ndim != 3 or img.shape[2] != 3:
        description = (f'{type(img).__name__} {img.dtype} {img.shape}'
                       if isinstance(img, np.ndarray) else type(img).__name__)
        raise ValueError(f"{transform_name} expects results['img'] to be an "
                         f'HxWx3 uint8 BGR image, got {description}')
    return img


class BasePhotometricTransform(BaseTransform):
    """Apply a pixel-value-only augmentation to ``results['img']``.

    Subclasses implement :meth:`augment`, which maps an HxWx3 uint8 BGR image
    to a new image of the same shape (any dtype; the result is rounded,
    clipped and cast back to uint8 here). Randomness must come from numpy's
    global RNG so mmengine's seeding makes the pipeline reproducible. To
    apply one with a probability, wrap it in mmcv's ``RandomApply``
    (``dict(type='RandomApply', transforms=[...], prob=0.8)``).
    """

    def augment(self, img):
        """Return the augmented copy of ``img`` (HxWx3 uint8 BGR)."""
        raise NotImplementedError

    def transform(self, results):
        """Augment ``results['img']``.

        Args:
            results (dict): Pipeline results holding 'img'.

        Returns:
            dict: ``results`` with the augmented 'img'; all other entries
            (shapes, masks, metainfo) are left as they are.
        """
        img = check_bgr_uint8_image(results, type(self).__name__)
        results['img'] = to_uint8(self.augment(img), img.shape)
        return results


def to_uint8(img, expected_shape):
    """Round, clip and cast ``img`` to uint8, checking its shape.

    Args:
        img (np.ndarray): Augmented image of any numeric dtype.
        expected_shape (tuple): Shape of the input image.

    Returns:
        np.ndarray: uint8 image with ``expected_shape``.
    """
    if img.shape != expected_shape:
        raise RuntimeError(f'photometric augmentation changed the image '
                           f'shape from {expected_shape} to {img.shape}')
    if img.dtype == np.uint8:
        return img
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
