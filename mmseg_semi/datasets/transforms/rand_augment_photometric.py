"""RandAugment restricted to photometric (pixel-value-only) ops."""
import mmcv
import numpy as np
from mmseg.registry import TRANSFORMS

from ...utils.arg_checks import check_int, check_range
from .base_photometric import BasePhotometricTransform

# Enhancement ops scale towards a degenerate image by a factor in
# [1 - MAX_ENHANCE_DELTA, 1 + MAX_ENHANCE_DELTA], the [0.1, 1.9] range of
# the RandAugment paper.
MAX_ENHANCE_DELTA = 0.9
# Posterize keeps between 8 and 8 - MAX_POSTERIZE_DROP bits per channel.
MAX_POSTERIZE_DROP = 4


def enhancement_factor(magnitude):
    """Map a magnitude in [0, 1] to a factor below or above 1 at random."""
    sign = 1.0 if np.random.rand() < 0.5 else -1.0
    return 1.0 + sign * MAX_ENHANCE_DELTA * magnitude


def identity(img, magnitude):
    """Return ``img`` unchanged; lets RandAugment pick "no-op"."""
    return img


def autocontrast(img, magnitude):
    """Stretch each channel to the full 0..255 range (no magnitude)."""
    return mmcv.auto_contrast(img)


def equalize(img, magnitude):
    """Equalise each channel's histogram (no magnitude)."""
    return mmcv.imequalize(img)


def posterize(img, magnitude):
    """Keep ``8 - round(4 * magnitude)`` bits of each channel."""
    bits = 8 - int(round(MAX_POSTERIZE_DROP * magnitude))
    return mmcv.posterize(img, bits)


def solarize(img, magnitude):
    """Invert pixels >= ``256 - round(256 * magnitude)``; 0 leaves all."""
    threshold = 256 - int(round(256 * magnitude))
    return mmcv.solarize(img, threshold)


def sharpness(img, magnitude):
    """Blend with a smoothed copy by a random factor around 1."""
    return mmcv.adjust_sharpness(img, enhancement_factor(magnitude))


def brightness(img, magnitude):
    """Blend with black by a random factor around 1."""
    return mmcv.adjust_brightness(img, enhancement_factor(magnitude))


def contrast(img, magnitude):
    """Blend with the mean grey level by a random factor around 1."""
    return mmcv.adjust_contrast(img, enhancement_factor(magnitude))


def color(img, magnitude):
    """Blend with the greyscale image (saturation) by a factor around 1."""
    return mmcv.adjust_color(img, alpha=enhancement_factor(magnitude))


PHOTOMETRIC_OPS = {
    'identity': identity,
    'autocontrast': autocontrast,
    'equalize': equalize,
    'posterize': posterize,
    'solarize': solarize,
    'sharpness': sharpness,
    'brightness': brightness,
    'contrast': contrast,
    'color': color,
}


@TRANSFORMS.register_module()
class RandAugmentPhotometric(BasePhotometricTransform):
    """RandAugment with photometric ops only.

    Draws ``num_ops`` ops uniformly with replacement from ``ops`` (as
    RandAugment does) and applies them in that order, each with its own
    magnitude drawn uniformly from ``magnitude_range``. A magnitude is the
    fraction of an op's strongest setting: posterize keeps 8 down to 4 bits,
    solarize lowers its threshold from 256 (no change) to 0 (full
    inversion), and sharpness / brightness / contrast / color use a factor
    ``1 +- 0.9 * magnitude`` with a random sign. autocontrast, equalize and
    identity ignore the magnitude.

    Geometric RandAugment ops (rotate, shear, translate, ...) are excluded on
    purpose: the strong (student) view must keep exactly the geometry of the
    weak (teacher) view, so the teacher's pseudo-label lines up with the
    student's pixels and needs no re-projection.

    Args:
        num_ops (int): Number of ops applied per image. Defaults to 2.
        magnitude_range (tuple[float, float]): Range of the per-op
            magnitude, within [0, 1]. Defaults to (0.0, 1.0).
        ops (tuple[str]): Names of the ops to choose from, a subset of
            ``PHOTOMETRIC_OPS``. Defaults to all of them.
    """

    def __init__(self,
                 num_ops=2,
                 magnitude_range=(0.0, 1.0),
                 ops=tuple(PHOTOMETRIC_OPS)):
        self.num_ops = check_int('num_ops', num_ops, minimum=1)
        self.magnitude_range = check_range('magnitude_range',
                                           magnitude_range, 0, 1)
        if isinstance(ops, str) or len(ops) == 0:
            raise ValueError(f'ops must be a non-empty sequence of op names, '
                             f'got {ops!r}')
        unknown = [name for name in ops if name not in PHOTOMETRIC_OPS]
        if unknown:
            raise ValueError(f'unknown photometric ops {unknown}; choose from '
                             f'{sorted(PHOTOMETRIC_OPS)}')
        self.ops = tuple(ops)

    def augment(self, img):
        """Apply ``num_ops`` randomly chosen ops with random magnitudes."""
        for op_index in np.random.randint(len(self.ops), size=self.num_ops):
            magnitude = np.random.uniform(*self.magnitude_range)
            img = PHOTOMETRIC_OPS[self.ops[op_index]](img, magnitude)
        return img

    def __repr__(self):
        return (f'{type(self).__name__}(num_ops={self.num_ops}, '
                f'magnitude_range={self.magnitude_range}, ops={self.ops})')
