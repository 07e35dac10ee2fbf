from .base_pseudo_labeler import BasePseudoLabeler
from .confidence_pseudo_labeler import ConfidencePseudoLabeler
from .distribution_alignment import DistributionAlignment
from .entropy_pseudo_labeler import EntropyPseudoLabeler
from .pseudo_labels import PseudoLabels

__all__ = [
    'BasePseudoLabeler',
    'ConfidencePseudoLabeler',
    'DistributionAlignment',
    'EntropyPseudoLabeler',
    'PseudoLabels',
]

from .prototype_rectifier import PrototypeRectifier

__all__ += ['PrototypeRectifier']
