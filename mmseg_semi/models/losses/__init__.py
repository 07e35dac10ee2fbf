from .u2pl_contrastive_loss import U2PLContrastiveLoss

__all__ = ['U2PLContrastiveLoss']
