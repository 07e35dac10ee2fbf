# RML on CamVid 1/8 with heterogeneous students: student 1 is DeepLabV3+ on
# EfficientNet-Lite0 (a CNN, ImageNet weights), student 2 a SegFormer MiT-B0
# (a small Transformer, trained from scratch: mmseg's MiT weights are not
# available offline). Different architectures couple less than two copies
# of one network. Stage 1.
# Student 2's drop_path_rate is the MiT-B0 base's 0.1, the milder noise
# the homogeneous config gives its student 2.
_base_ = [
    './rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
    '../_base_/models/segformer_mit-b0_camvid.py'
]
model = dict(
    segmentor2=dict(_delete_=True, **_base_.segformer_mit_b0),
    student2_noise=dict(dropout=0.5, drop_path=0.0))
