# Mean teacher on CamVid 1/8 (46 labeled + 321 unlabeled images): entropy
# pseudo-labeler (U2PL Eq. 5-8), CutMix, EMA teacher with U2PL's warm-up.
# Batch: 4 labeled + 4 unlabeled images per step.
_base_ = [
    '../_base_/models/deeplabv3plus_effnetlite0.py',
    '../_base_/datasets/camvid_semi.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
model = dict(
    _delete_=True,
    type='MeanTeacherSegmentor',
    segmentor={{_base_.model}},
    pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
    cutmix=dict(prob=1.0),
    # Supervised-only warm-up (U2PL trains one epoch without the
    # unsupervised loss); the EMA hook copies the student until then.
    unsup_start_iter=100)
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    unlabeled_dataloader={{_base_.unlabeled_dataloader}})
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [dict(type='EMATeacherHook', decay=0.99, warmup=True)]
default_hooks = dict(
    checkpoint=dict(save_best='teacher/mIoU', rule='greater'))
