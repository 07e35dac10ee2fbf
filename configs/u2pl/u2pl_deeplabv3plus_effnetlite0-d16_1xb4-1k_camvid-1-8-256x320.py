# U2PL on CamVid 1/8: the mean-teacher config plus U2PL's representation head
# and pixel contrastive loss (../_base_/models/u2pl_effnetlite0_heads.py).
_base_ = [
    '../mean_teacher/'
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
    '../_base_/models/u2pl_effnetlite0_heads.py'
]
# The head's in_channels and the loss's num_classes are read from the
# student.
model = dict(
    rep_head=_base_.u2pl_rep_head,
    contrastive_loss=_base_.u2pl_contrastive_loss)
