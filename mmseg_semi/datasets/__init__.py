from .camvid import CamVidDataset
from .ccp import CCPDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['CamVidDataset', 'CCPDataset']
