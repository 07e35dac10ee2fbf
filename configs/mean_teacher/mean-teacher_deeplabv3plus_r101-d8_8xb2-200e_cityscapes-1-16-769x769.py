# Mean teacher on Cityscapes 1/16 (186 labeled + 2,789 unlabeled images),
# the U2PL paper's setting for 8 GPUs: the SupOnly config plus U2PL's
# entropy pseudo-labeler (alpha_0 = 0.2, Eq. 5-8), CutMix and an EMA teacher
# (decay 0.99 with U2PL's warm-up). Batch: 16 labeled + 16 unlabeled images
# per step (8 GPUs x (2 + 2)).
# An epoch runs over the unlabeled images: U2PL resamples both its labeled
# and unlabeled lists to 2,975 - 186 = 2,789 images (n_sup), so
# 200 x ceil(2,789 / 16) = 200 x 175 = 35,000 iterations. U2PL's Cityscapes
# config sets sup_only_epoch: 0, so the unsupervised loss starts at once.
# The sibling split configs change only the split and max_iters.
_base_ = [
    '../supervised/deeplabv3plus_r101-d8_8xb2-200e_cityscapes-1-16-769x769.py'
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
    unsup_start_iter=0)
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    max_iters=35000,
    unlabeled_dataloader={{_base_.unlabeled_dataloader}})
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [dict(type='EMATeacherHook', decay=0.99, warmup=True)]
default_hooks = dict(
    checkpoint=dict(save_best='teacher/mIoU', rule='greater'))
