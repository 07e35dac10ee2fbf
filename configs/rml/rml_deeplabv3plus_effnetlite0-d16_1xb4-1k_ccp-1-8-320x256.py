# RML on CCP 1/8 (88 labeled + 616 unlabeled photos), stage 1: the CamVid
# RML recipe (../_base_/models/rml_deeplabv3plus_effnetlite0.py) unchanged.
_base_ = [
    '../_base_/models/rml_deeplabv3plus_effnetlite0.py',
    '../_base_/datasets/ccp_semi.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    unlabeled_dataloader={{_base_.unlabeled_dataloader}})
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [
    dict(type='EMATeacherHook', decay=0.99, warmup=True),
    dict(type='ClassCollapseGuardHook', interval=50)
]
