# Mean teacher on PASCAL VOC 2012 blender 1/16 (662 labeled + 9,920
# unlabeled images), the U2PL paper's setting for 8 GPUs: the SupOnly config
# plus U2PL's entropy pseudo-labeler (alpha_0 = 0.2, Eq. 5-8), CutMix and an
# EMA teacher (decay 0.99 with U2PL's warm-up). Batch: 16 labeled + 16
# unlabeled images per step (8 GPUs x (2 + 2)).
# An epoch runs over the unlabeled images: U2PL resamples both its labeled
# and unlabeled lists to 10,582 - 662 = 9,920 images (n_sup), so
# 80 x ceil(9,920 / 16) = 80 x 620 = 49,600 iterations, the first epoch
# (620 iterations) supervised only as in U2PL's VOC configs.
# The sibling split configs change only the split, max_iters and
# unsup_start_iter.
_base_ = [
    '../supervised/deeplabv3plus_r101-d8_8xb2-80e_voc12-blender-1-16-513x513.py'
]
model = dict(
    _delete_=True,
    type='MeanTeacherSegmentor',
    segmentor={{_base_.model}},
    # The paper's labeler: one batch-wide entropy quantile (Eq. 6) on the
    # raw softmax (no class-wise quantiles, no distribution alignment).
    pseudo_labeler=dict(
        type='EntropyPseudoLabeler', alpha_0=0.2, class_wise=False),
    class_balance=None,
    # U2PL CutMixes the unlabeled batch in half of the steps; here each
    # image is mixed with probability 0.5. Its box (generate_cutout_mask,
    # ratio 2) covers half the image, its sides between half and all of the
    # image's: height/width in [0.5, 2] on these square crops.
    cutmix=dict(
        prob=0.5, area_ratio_range=(0.5, 0.5), aspect_ratio_range=(0.5, 2.0)),
    unsup_start_iter=620)
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    max_iters=49600,
    unlabeled_dataloader={{_base_.unlabeled_dataloader}})
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [dict(type='EMATeacherHook', decay=0.99, warmup=True)]
default_hooks = dict(
    checkpoint=dict(save_best='teacher/mIoU', rule='greater'))
