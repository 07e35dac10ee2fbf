# An mmseg model made semi-supervised in a few lines: PSPNet-R18 from
# mmseg's model zoo, trained as a mean teacher on CamVid 1/8 (labeled and
# unlabeled splits from camvid_semi.py). Replace the model base by your
# own config's model; see docs/tutorials/semi_supervised_from_your_config.md.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',  # any mmseg model
    '../_base_/datasets/camvid_semi.py',  # defines unlabeled_dataloader
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
# Your supervised model, as mmseg's pspnet_r18-d8 configs size it, with
# CamVid's 11 classes; no ImageNet weights offline (set
# pretrained='open-mmlab://resnet18_v1c' or use load_from when online).
# mmseg's full configs pad batches to `size=crop_size`; any crop works
# with a size divisor instead.
data_preprocessor = dict(_base_.data_preprocessor, size_divisor=32)
segmentor = dict(
    _base_.model,
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(_base_.model.backbone, depth=18),
    decode_head=dict(
        _base_.model.decode_head,
        in_channels=512,
        channels=128,
        num_classes=11),
    auxiliary_head=dict(
        _base_.model.auxiliary_head,
        in_channels=256,
        channels=64,
        num_classes=11))
# The semi-supervised part: wrap the model, add the unlabeled loader, the
# teacher/student validation and the EMA teacher.
model = dict(
    _delete_=True,
    type='MeanTeacherSegmentor',
    segmentor=segmentor,
    pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
    cutmix=dict(prob=1.0),
    unsup_start_iter=100)
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    unlabeled_dataloader=_base_.unlabeled_dataloader)
val_cfg = dict(type='TeacherStudentValLoop')
custom_hooks = [
    dict(type='EMATeacherHook', decay=0.99, warmup=True),
    dict(type='ClassCollapseGuardHook', interval=50)
]
