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
from PIL import Image

from mmseg_semi.datasets.class_frequency import (label_pixel_counts,
                                                 median_frequency_weights)


def read_label_maps(mask_dir: str, names, suffix: str):
    for name in names:
        path = osp.join(mask_dir, name + suffix)
        if not osp.isfile(path):
            raise FileNotFoundError(f'label map {path} (listed as {name!r}) '
                                    'does not exist')
        yield np.array(Image.open(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('mask_dir', help='folder of label maps')
    parser.add_argument('split', help='text file, one image name per line')
    parser.add_argument('--num-classes', type=int, required=True)
    parser.add_argument('--suffix', default='.png')
    args = parser.parse_args()
    with open(args.split) as f:
        names = [line.strip() for line in f if line.strip()]
    class_pixels, present = label_pixel_counts(
        read_label_maps(args.mask_dir, names, args.suffix), args.num_classes)
    weights = median_frequency_weights(class_pixels, present)
    print(f'{len(names)} label maps from {args.split}')
    print('class_weight=[' + ', '.join(f'{w:.4f}' for w in weights) + ']')


if __name__ == '__main__':
    main()
