# Mean teacher on CamVid 1/8 with a SegFormer MiT-B0 student (trained from
# scratch) instead of DeepLabV3+ EfficientNet-Lite0. Everything else is
# ../mean_teacher/mean-teacher_..._camvid-1-8-256x320.py.
_base_ = [
    '../mean_teacher/'
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
    '../_base_/models/segformer_mit-b0_camvid.py'
]
# The split's class weights, as on the DeepLabV3+ student.
segformer_mit_b0_weighted = dict(
    _base_.segformer_mit_b0,
    decode_head=dict(
        _base_.segformer_mit_b0.decode_head,
        loss_decode=dict(
            _base_.segformer_mit_b0.decode_head.loss_decode,
            class_weight=_base_.class_weight_1_8)))
model = dict(segmentor=dict(_delete_=True, **segformer_mit_b0_weighted))
