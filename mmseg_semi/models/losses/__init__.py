from .class_weighted_cross_entropy_loss import ClassWeightedCrossEntropyLoss
from .u2pl_contrastive_loss import U2PLContrastiveLoss

__all__ = ['ClassWeightedCrossEntropyLoss', 'U2PLContrastiveLoss']
