from typing import Optional

import numpy as np
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

from ...utils.arg_checks import check_int


@TRANSFORMS.register_module()
class LoadCheckedAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` that also checks what it loaded.

    mmseg loads masks without looking at them: an undecodable mask fails
    with PIL's "cannot identify image file <BytesIO>", a mask of another
    size than its image is silently cropped or padded against it by later
    transforms, and a label >= ``num_classes`` (other than the ignore index)
    reaches the cross-entropy, where it is a device-side assert on CUDA and
    an unhelpful IndexError or silent nonsense on CPU. Loading is the
    natural place for these checks: both file names are at hand, the mask
    has just been decoded (after ``label_map``/``reduce_zero_label``), and
    the check runs in data-loader workers, off the training step, on one
    numpy array. The errors name the file(s) and values at fault.

    An image handed over without a dataset (mmseg's ``inference_model`` and
    ``MMSegInferencer``, which drop only transforms typed
    ``LoadAnnotations`` from a test pipeline) has no mask to load and passes
    through unchanged, so configs using this loader work for inference. A
    dataset sample without ``seg_map_path`` is a dataset with no masks
    configured and raises.

    Args:
        num_classes: Number of classes; None skips the value check.
        ignore_index: Label value allowed besides ``0..num_classes-1``.
        **kwargs: ``LoadAnnotations`` arguments.
    """

    def __init__(self,
                 num_classes: Optional[int] = None,
                 ignore_index: int = 255,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if num_classes is not None:
            check_int('num_classes', num_classes, minimum=1)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        if 'seg_map_path' not in results:
            if 'sample_idx' not in results:  # not from a dataset: inference
                return results
            raise KeyError(
                f"img_path={results.get('img_path')!r} has no seg_map_path "
                'to load its label map from: give the dataset '
                'data_prefix.seg_map_path, or drop LoadCheckedAnnotations '
                'from the pipeline of unlabeled data')
        return super().transform(results)

    def _load_seg_map(self, results: dict) -> None:
        try:
            super()._load_seg_map(results)
        except (OSError, ValueError, AttributeError) as error:
            # PIL/cv2 do not know the file name (they decode bytes).
            raise ValueError(
                f'cannot decode the label map seg_map_path='
                f"{results.get('seg_map_path')!r}: {error}") from error
        seg_map = results['gt_seg_map']
        check_same_size(results, seg_map)
        if self.num_classes is not None:
            check_label_values(seg_map, self.num_classes, self.ignore_index,
                               results.get('seg_map_path'))

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, num_classes={self.num_classes}'
                f', ignore_index={self.ignore_index})')


def check_same_size(results: dict, seg_map: np.ndarray) -> None:
    """The mask must be as large as the image it annotates.

    ``ori_shape`` is the image as ``LoadImageFromFile`` read it, kept by
    later resizes, so the check also holds after a ``Resize``.
    """
    image_shape = results.get('ori_shape')
    if image_shape is None:
        return  # no image loaded before the mask: nothing to compare
    if tuple(seg_map.shape[:2]) != tuple(image_shape[:2]):
        raise ValueError(
            f"image img_path={results.get('img_path')!r} is "
            f'{tuple(image_shape[:2])} (H, W) but its label map '
            f"seg_map_path={results.get('seg_map_path')!r} is "
            f'{tuple(seg_map.shape[:2])}')


def check_label_values(seg_map: np.ndarray, num_classes: int,
                       ignore_index: int, path: Optional[str]) -> None:
    """Labels must be classes (``0..num_classes-1``) or ``ignore_index``."""
    bad = ((seg_map >= num_classes) | (seg_map < 0)) & \
        (seg_map != ignore_index)
    if bad.any():
        values = np.unique(seg_map[bad]).tolist()
        raise ValueError(
            f'label map seg_map_path={path!r} holds value(s) {values[:10]} '
            f'outside 0..{num_classes - 1} that are not the ignore index '
            f'{ignore_index} ({int(bad.sum())} pixels); fix the mask or map '
            'them with the dataset label_map')
