import os
import os.path as osp
from typing import List, Sequence, Union

from mmengine import fileio
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from ..utils.arg_checks import check_bool

#: Suffixes of the image files most photo folders hold.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


@DATASETS.register_module()
class UnlabeledImageFolderDataset(BaseSegDataset):
    """Every image under one folder, without masks or a split file.

    Unlabeled data is usually a folder of photos nobody annotated: it needs
    no split file, its names pair with no mask, and it mixes suffixes
    (``.jpg``, ``.JPG``, ``.png``). This dataset lists every file under
    ``data_prefix['img_path']`` (sub-folders too, unless ``recursive`` is
    False) whose name ends, in any case, with one of ``img_suffix``, sorted;
    hidden files and folders (``.DS_Store``, macOS ``._photo.jpg``,
    ``.ipynb_checkpoints/``) are skipped because they are not images. The
    samples carry only ``img_path``, for an unlabeled pipeline such as
    ``LoadImageFromFile`` ... ``MultiBranch(weak=..., strong=...)``.

    A missing folder or one without a matching image fails when the dataset
    is built, naming the folder (mmengine would otherwise fail with "need at
    least one array to concatenate").

    Args:
        img_suffix (str | Sequence[str]): Suffix(es) of the image files,
            matched case-insensitively. Defaults to ``IMAGE_SUFFIXES``
            (.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp).
        recursive (bool): Also list the sub-folders. Defaults to True.
        data_prefix (dict): ``img_path``, the folder (under ``data_root``).
            A ``seg_map_path`` is refused: this dataset has no masks.
        **kwargs: ``data_root``, ``pipeline``, ``indices``, ``metainfo`` and
            the other arguments of mmseg's ``BaseSegDataset``. ``ann_file``
            is refused: use ``BaseSegDataset`` (or ``CamVidDataset``) to
            read a split file.
    """

    def __init__(self,
                 img_suffix: Union[str, Sequence[str]] = IMAGE_SUFFIXES,
                 recursive: bool = True,
                 data_prefix: dict = dict(img_path=''),
                 **kwargs) -> None:
        name = type(self).__name__
        suffixes = (img_suffix, ) if isinstance(img_suffix, str) else \
            tuple(img_suffix)
        if not suffixes or not all(
                isinstance(suffix, str) and suffix for suffix in suffixes):
            raise ValueError(f'{name}: img_suffix must be a non-empty string '
                             f'or a list of them, got {img_suffix!r}')
        if kwargs.get('ann_file'):
            raise ValueError(
                f'{name} lists every image under img_path and reads no '
                f"split file, got ann_file={kwargs['ann_file']!r}; use "
                'BaseSegDataset to read a split file')
        if data_prefix.get('seg_map_path') is not None:
            raise ValueError(
                f'{name} has no masks, got data_prefix.seg_map_path='
                f"{data_prefix['seg_map_path']!r}; use BaseSegDataset for "
                'labeled data')
        self.recursive = check_bool('recursive', recursive)
        super().__init__(
            img_suffix=tuple(suffix.lower() for suffix in suffixes),
            data_prefix=data_prefix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        name = type(self).__name__
        img_dir = self.data_prefix.get('img_path') or ''
        if not fileio.isdir(img_dir, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'{name}: img_path={img_dir!r} is not a folder')
        files = fileio.list_dir_or_file(
            img_dir,
            list_dir=False,
            recursive=self.recursive,
            backend_args=self.backend_args)
        images = sorted(
            path for path in files
            if path.lower().endswith(self.img_suffix) and not is_hidden(path))
        if not images:
            where = 'under' if self.recursive else \
                'directly in (recursive=False)'
            raise ValueError(
                f'{name}: no image ending in {" / ".join(self.img_suffix)} '
                f'{where} img_path={img_dir!r}')
        return [
            dict(
                img_path=osp.join(img_dir, path),
                label_map=self.label_map,
                reduce_zero_label=self.reduce_zero_label,
                seg_fields=[]) for path in images
        ]


def is_hidden(path: str) -> bool:
    """Whether a relative path names a hidden file or lies in a hidden
    folder (a name starting with a dot)."""
    parts = osp.normpath(path).split(os.sep)
    return any(part.startswith('.') for part in parts)
