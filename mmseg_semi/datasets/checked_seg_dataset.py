"""Split-file checks shared by this package's datasets (not registered)."""
import os.path as osp
from typing import List

from mmseg.datasets import BaseSegDataset


class CheckedSegDataset(BaseSegDataset):
    """mmseg's ``BaseSegDataset`` that fails at build time, naming the file.

    A missing or empty split file, a split that lists no image, and listed
    images (and masks, when masks are used) that do not exist or are empty
    raise when the dataset is built, rather than in a data-loader worker
    mid-training. Leaving ``seg_map_path`` out of ``data_prefix`` gives an
    unlabeled dataset whose samples have no mask at all.

    Args:
        check_files (bool): Check at build time that every listed image
            (and mask) exists. Defaults to True.
        **kwargs: Arguments of mmseg's ``BaseSegDataset``. A relative
            ``ann_file`` is read under ``data_root``.
    """

    def __init__(self, check_files: bool = True, **kwargs) -> None:
        self.check_files = check_files
        super().__init__(**kwargs)

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
