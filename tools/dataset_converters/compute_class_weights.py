"""Median-frequency class weights for a labeled split.

Median frequency balancing (Eigen & Fergus, ICCV 2015; used by SegNet on
CamVid): ``freq_c`` is the number of pixels of class c divided by the number
of pixels of the images in which c appears, and ``w_c = median(freq) /
freq_c``. Only the labeled split's masks are read, so a semi-supervised
config's weights use no unlabeled annotation.

Example::

    python tools/dataset_converters/compute_class_weights.py \
        ../shared/data/camvid/trainannot splits/camvid/1-8_seed0/labeled.txt \
        --num-classes 11
"""
import argparse
import os.path as osp

import numpy as np
import torch
from PIL import Image


def median_frequency_weights(class_pixels: torch.Tensor,
                             present_pixels: torch.Tensor) -> torch.Tensor:
    """``median(f) / f_c`` with ``f_c = class_pixels_c / present_pixels_c``.

    Classes never seen get weight 0 (they cannot be balanced) and do not
    enter the median.
    """
    seen = present_pixels > 0
    freq = torch.zeros_like(class_pixels, dtype=torch.float64)
    freq[seen] = class_pixels[seen].double() / present_pixels[seen].double()
    weights = torch.zeros_like(freq)
    if seen.any():
        weights[seen] = freq[seen].median() / freq[seen]
    return weights


def count_pixels(mask_dir: str, names, num_classes: int, suffix: str,
                 ignore_index: int = 255):
    class_pixels = torch.zeros(num_classes, dtype=torch.int64)
    present_pixels = torch.zeros(num_classes, dtype=torch.int64)
    for name in names:
        path = osp.join(mask_dir, name + suffix)
        if not osp.isfile(path):
            raise FileNotFoundError(f'label map {path} (listed as {name!r}) '
                                    'does not exist')
        label = torch.from_numpy(np.array(Image.open(path))).long()
        label = label[(label < num_classes) & (label != ignore_index)]
        counts = torch.bincount(label, minlength=num_classes)
        class_pixels += counts
        present_pixels[counts > 0] += label.numel()
    return class_pixels, present_pixels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('mask_dir', help='folder of label maps')
    parser.add_argument('split', help='text file, one image name per line')
    parser.add_argument('--num-classes', type=int, required=True)
    parser.add_argument('--suffix', default='.png')
    args = parser.parse_args()
    with open(args.split) as f:
        names = [line.strip() for line in f if line.strip()]
    class_pixels, present = count_pixels(args.mask_dir, names,
                                         args.num_classes, args.suffix)
    weights = median_frequency_weights(class_pixels, present)
    print(f'{len(names)} label maps from {args.split}')
    print('class_weight=[' + ', '.join(f'{w:.4f}' for w in weights) + ']')


if __name__ == '__main__':
    main()
