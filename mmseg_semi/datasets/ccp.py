from mmseg.registry import DATASETS
from .checked_seg_dataset import CheckedSegDataset


@DATASETS.register_module()
class CCPDataset(CheckedSegDataset):
    """Clothing Co-Parsing (Yang et al., CVPR 2014), tags merged to 11 groups.

    The layout of ``shared/data/ccp`` (its README): photos
    ``img_dir/<split>/<name>.jpg``, single-channel labels
    ``ann_dir/<split>/<name>.png`` with values 0-10 (no ignore value occurs;
    255 is free for padding). About 77% of the labelled pixels are
    background and several groups cover 1% or less, the kind of imbalance
    under which batch-wide pseudo-label selection drops the rare classes.

    Args:
        img_suffix (str): Defaults to '.jpg'.
        seg_map_suffix (str): Defaults to '.png'.
        **kwargs: ``check_files`` (see :class:`CheckedSegDataset`) and the
            arguments of mmseg's ``BaseSegDataset``.
    """
    METAINFO = dict(
        classes=('background', 'skin', 'hair', 'upper', 'outer', 'dress',
                 'lower', 'legwear', 'footwear', 'bag', 'accessory'),
        palette=[[0, 0, 0], [255, 200, 160], [90, 50, 20], [220, 20, 60],
                 [0, 90, 180], [200, 0, 200], [0, 60, 120], [120, 120, 120],
                 [250, 170, 30], [120, 200, 40], [0, 200, 200]])

    def __init__(self,
                 img_suffix='.jpg',
                 seg_map_suffix='.png',
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
