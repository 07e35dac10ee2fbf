from .camvid import CamVidDataset
from .ccp import CCPDataset
from .transforms import *  # noqa: F401,F403
from .unlabeled_image_folder import UnlabeledImageFolderDataset

__all__ = ['CamVidDataset', 'CCPDataset', 'UnlabeledImageFolderDataset']
