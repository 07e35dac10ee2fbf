# SegFormer MiT-B0 for CamVid (11 classes), trained from scratch: mmseg's
# ImageNet MiT weights are not available offline. Defined as
# `segformer_mit_b0` rather than `model` so a config can inherit it next to
# another model base (mmengine refuses keys repeated across _base_ files)
# and place it where it wants, e.g.
#   model = dict(segmentor=dict(_delete_=True, **_base_.segformer_mit_b0))
segformer_mit_b0 = dict(
    type='EncoderDecoder',
    # EfficientNet-Lite's (x - 127) / 128 (see deeplabv3plus_effnetlite0.py):
    # without pretrained weights no other statistics are expected, and an
    # RML pair with an EfficientNet-Lite student must share one
    # normalisation.
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[127.0, 127.0, 127.0],
        std=[128.0, 128.0, 128.0],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size_divisor=32),
    backbone=dict(
        type='MixVisionTransformer',
        in_channels=3,
        embed_dims=32,
        num_stages=4,
        num_layers=[2, 2, 2, 2],
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3),
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        # mmseg's MiT-B0 stochastic depth.
        drop_path_rate=0.1),
    decode_head=dict(
        type='SegformerHead',
        in_channels=[32, 64, 160, 256],
        in_index=[0, 1, 2, 3],
        # 128 rather than SegFormer's 256, sized for CPU training like the
        # DeepLabV3+ EfficientNet-Lite0 128-channel decoder.
        channels=128,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
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
