from .camvid import CamVidDataset
from .transforms import *  # noqa: F401,F403

__all__ = ['CamVidDataset']
