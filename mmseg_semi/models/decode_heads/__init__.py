from .deeplabv2_head import DeepLabV2Head
from .representation_head import RepresentationHead

__all__ = ['DeepLabV2Head', 'RepresentationHead']
