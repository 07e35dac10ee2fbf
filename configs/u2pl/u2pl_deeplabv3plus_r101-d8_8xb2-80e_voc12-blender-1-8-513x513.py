# U2PL on PASCAL VOC 2012 blender 1/8 (1,323 labeled + 9,259 unlabeled
# images), the paper's setting for 8 GPUs (batch 16 labeled + 16
# unlabeled): its mean-teacher config (network, data, schedule, entropy
# pseudo-labeler, CutMix, EMA teacher) plus the representation head and
# contrastive loss of u2pl_r101_heads.py, nothing else.
_base_ = [
    '../mean_teacher/mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_'
    'voc12-blender-1-8-513x513.py',
    '../_base_/models/u2pl_r101_heads.py'
]
# The loss's num_classes is read from the student.
model = dict(
    rep_head=_base_.u2pl_rep_head,
    contrastive_loss=_base_.u2pl_contrastive_loss)
# U2PL's representation head is part of its decoder, which learns 10x
# faster than the backbone on VOC (like decode_head and auxiliary_head in
# the mean-teacher config; student_rep_head matches the key).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys=dict(rep_head=dict(lr_mult=10.))))
