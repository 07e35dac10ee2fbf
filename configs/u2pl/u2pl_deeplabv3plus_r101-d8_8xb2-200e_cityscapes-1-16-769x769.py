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
# The loss's num_classes is read from the student.
model = dict(
    rep_head=_base_.u2pl_rep_head,
    contrastive_loss=_base_.u2pl_contrastive_loss)
# No optimizer change: on Cityscapes U2PL trains every part, the
# representation head included, at the base lr 0.01.
