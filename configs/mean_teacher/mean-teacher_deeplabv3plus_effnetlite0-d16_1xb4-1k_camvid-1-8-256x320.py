# Mean teacher on CamVid 1/8 (46 labeled + 321 unlabeled images): entropy
# pseudo-labeler (U2PL Eq. 5-8), CutMix, EMA teacher with U2PL's warm-up.
# Batch: 4 labeled + 4 unlabeled images per step.
_base_ = [
    '../_base_/models/mean_teacher_deeplabv3plus_effnetlite0.py',
    '../_base_/datasets/camvid_semi.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    unlabeled_dataloader={{_base_.unlabeled_dataloader}})
val_cfg = dict(type='TeacherStudentValLoop')
# The guard logs each class's pseudo-label share against its labeled share
# (work_dir/<run>/class_shares.jsonl) and warns when one is vanishing.
custom_hooks = [
    dict(type='EMATeacherHook', decay=0.99, warmup=True),
    dict(type='ClassCollapseGuardHook', interval=50)
]
default_hooks = dict(
    checkpoint=dict(save_best='teacher/mIoU', rule='greater'))
