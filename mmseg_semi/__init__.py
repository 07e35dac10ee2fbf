"""mmseg-semi: semi-supervised semantic segmentation for MMSegmentation 1.x.

Importing the package applies the compatibility patches for the pinned
OpenMMLab stack (see :mod:`mmseg_semi.utils.compat`) and registers every
component into mmseg's registries.
"""
from .utils.compat import apply_compat_patches

apply_compat_patches()

from . import datasets, engine, models  # noqa: E402,F401
from .version import __version__  # noqa: E402

__all__ = ['__version__', 'apply_compat_patches']
