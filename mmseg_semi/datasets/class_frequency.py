"""Median-frequency class weights from a dataset's label maps (not
registered; used by ``LabeledClassWeightHook`` and
``tools/dataset_converters/compute_class_weights.py``)."""
from typing import Iterable, Tuple

import numpy as np
import torch
from mmseg.datasets.transforms import LoadAnnotations
from torch import Tensor


def median_frequency_weights(class_pixels: Tensor,
                             present_pixels: Tensor) -> Tensor:
    """Median frequency balancing (Eigen & Fergus, ICCV 2015, Sec. 4.1).

    ``w_c = median(f) / f_c`` with ``f_c = class_pixels_c /
    present_pixels_c``: a class's pixels divided by the pixels of the
    images in which it appears. Classes never seen get weight 0 (they
    cannot be balanced) and do not enter the median.

    Returns:
        float64 (C,) weights.
    """
    seen = present_pixels > 0
    freq = torch.zeros_like(class_pixels, dtype=torch.float64)
    freq[seen] = class_pixels[seen].double() / present_pixels[seen].double()
    weights = torch.zeros_like(freq)
    if seen.any():
        weights[seen] = freq[seen].median() / freq[seen]
    return weights


def label_pixel_counts(label_maps: Iterable[np.ndarray], num_classes: int,
                       ignore_index: int = 255) -> Tuple[Tensor, Tensor]:
    """Per class: its pixels, and the labelled pixels of the maps it is in.

    Labels outside ``[0, num_classes)`` and ``ignore_index`` count for
    nothing.

    Returns:
        int64 (C,) ``class_pixels`` and ``present_pixels``.
    """
    class_pixels = torch.zeros(num_classes, dtype=torch.int64)
    present_pixels = torch.zeros(num_classes, dtype=torch.int64)
    for label_map in label_maps:
        label = torch.from_numpy(np.asarray(label_map)).long().flatten()
        label = label[(label >= 0) & (label < num_classes)
                      & (label != ignore_index)]
        counts = torch.bincount(label, minlength=num_classes)
        class_pixels += counts
        present_pixels[counts > 0] += label.numel()
    return class_pixels, present_pixels


def dataset_label_maps(dataset) -> Iterable[np.ndarray]:
    """Each distinct label map of an mmseg dataset, decoded as its pipeline
    decodes it (its first ``LoadAnnotations``, so ``label_map`` and
    ``reduce_zero_label`` apply), without the other transforms.

    Works through dataset wrappers that have ``get_data_info`` (a repeated
    map is read once).

    Raises:
        ValueError: naming the dataset, when it lists no label map.
    """
    loader = next((t for t in getattr(dataset.pipeline, 'transforms', [])
                   if isinstance(t, LoadAnnotations)), None)
    loader = loader or LoadAnnotations()
    seen = set()
    for index in range(len(dataset)):
        info = dataset.get_data_info(index)
        path = info.get('seg_map_path')
        if path is None or path in seen:
            continue
        seen.add(path)
        results = loader(dict(info, seg_fields=[]))
        yield results['gt_seg_map']
    if not seen:
        raise ValueError(f'{type(dataset).__name__} lists no label map '
                         '(seg_map_path): cannot compute class weights')
