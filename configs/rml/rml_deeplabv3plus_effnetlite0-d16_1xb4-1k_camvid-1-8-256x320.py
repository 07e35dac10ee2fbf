# RML on CamVid 1/8 (46 labeled + 321 unlabeled images), stage 1: two
# DeepLabV3+ EfficientNet-Lite0 students with different model noise, EMA
# teachers with prototype rectification, mutual pseudo-label losses (Eq. 5),
# CutMix. Batch: 4 labeled + 4 unlabeled images per step. Stage 2 is
# ./rml_..._camvid-1-8-256x320_stage2.py.
_base_ = [
    '../_base_/models/rml_deeplabv3plus_effnetlite0.py',
    '../_base_/datasets/camvid_semi.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    unlabeled_dataloader={{_base_.unlabeled_dataloader}})
# Reports teacher1/, student1/, teacher2/, student2/ and ensemble/ metrics.
val_cfg = dict(type='TeacherStudentValLoop')
# The guard logs each class's pseudo-label share against its labeled share
# (work_dir/<run>/class_shares.jsonl) and warns when one is vanishing.
custom_hooks = [
    dict(type='EMATeacherHook', decay=0.99, warmup=True),
    dict(type='ClassCollapseGuardHook', interval=50)
]
default_hooks = dict(
    checkpoint=dict(save_best='teacher1/mIoU', rule='greater'))
