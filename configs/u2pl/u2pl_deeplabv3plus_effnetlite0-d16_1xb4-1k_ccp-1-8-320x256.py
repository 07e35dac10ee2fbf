# U2PL on CCP 1/8: the CCP mean-teacher config plus U2PL's representation
# head and pixel contrastive loss, as on CamVid.
_base_ = [
    '../mean_teacher/'
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_ccp-1-8-320x256.py',
    '../_base_/models/u2pl_effnetlite0_heads.py'
]
# The head's in_channels and the loss's num_classes are read from the
# student.
model = dict(
    rep_head=_base_.u2pl_rep_head,
    contrastive_loss=_base_.u2pl_contrastive_loss)
