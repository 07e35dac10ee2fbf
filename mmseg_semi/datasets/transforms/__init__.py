"""Data transforms for semi-supervised segmentation pipelines."""
from .base_photometric import BasePhotometricTransform
from .load_checked_annotations import LoadCheckedAnnotations
from .multi_branch import MultiBranch
from .rand_augment_photometric import PHOTOMETRIC_OPS, RandAugmentPhotometric
from .random_color_jitter import RandomColorJitter
from .random_gaussian_blur import RandomGaussianBlur

__all__ = [
    'BasePhotometricTransform', 'LoadCheckedAnnotations', 'MultiBranch',
    'PHOTOMETRIC_OPS', 'RandAugmentPhotometric', 'RandomColorJitter',
    'RandomGaussianBlur'
]
