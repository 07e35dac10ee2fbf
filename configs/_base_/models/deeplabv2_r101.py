# DeepLabv2 on ResNet-101 (Chen et al., TPAMI 2018), the network of RML's
# paper experiments (Zhang et al., 2021, arXiv 2106.00609): output stride 8
# (stages 3 and 4 dilated: strides (1, 2, 1, 1), dilations (1, 1, 2, 4)) and
# the ASPP-L classifier, four 3x3 classifiers with atrous rates 6, 12, 18
# and 24 whose scores are summed (DeepLabV2Head). No decoder, no auxiliary
# head, no dropout (RML's students get theirs as model noise).
#
# Backbone: mmseg's ResNetV1c-101 (deep stem) with ImageNet weights, as
# mmseg's DeepLab configs. The original DeepLabv2 used a Caffe ResNet-101
# (often with MS-COCO weights in semi-supervised papers); those weights are
# not in mmseg's model zoo.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1c',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnet101_v1c')),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=3,
        dilations=(6, 12, 18, 24),
        dropout_ratio=0.0,
        num_classes=19,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
