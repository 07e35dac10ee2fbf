# Mean teacher on CamVid 1/8 with a SegFormer MiT-B0 student (trained from
# scratch) instead of DeepLabV3+ EfficientNet-Lite0. Everything else is
# ../mean_teacher/mean-teacher_..._camvid-1-8-256x320.py.
_base_ = [
    '../mean_teacher/'
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
    '../_base_/models/segformer_mit-b0_camvid.py'
]
model = dict(segmentor=dict(_delete_=True, **_base_.segformer_mit_b0))
