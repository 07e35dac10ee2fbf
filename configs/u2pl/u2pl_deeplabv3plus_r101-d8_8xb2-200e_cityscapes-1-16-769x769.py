# U2PL on Cityscapes 1/16 (186 labeled + 2,789 unlabeled
# images), the paper's setting for 8 GPUs (batch 16 labeled + 16
# unlabeled): its mean-teacher config (network, data, schedule, entropy
# pseudo-labeler, CutMix, EMA teacher) plus the representation head and
# contrastive loss of u2pl_r101_heads.py, nothing else.
_base_ = [
    '../mean_teacher/mean-teacher_deeplabv3plus_r101-d8_8xb2-200e_'
    'cityscapes-1-16-769x769.py',
    '../_base_/models/u2pl_r101_heads.py'
]
# `_base_.x` (mmengine's Python-config access to inherited variables) lets
# the loss take the segmentor's number of classes.
model = dict(
    rep_head=_base_.u2pl_rep_head,
    contrastive_loss=dict(
        _base_.u2pl_contrastive_loss,
        num_classes=_base_.model.segmentor.decode_head.num_classes))
# No optimizer change: on Cityscapes U2PL trains every part, the
# representation head included, at the base lr 0.01.
