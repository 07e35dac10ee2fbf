# RML on CamVid 1/8 with heterogeneous students: student 1 is DeepLabV3+ on
# EfficientNet-Lite0 (a CNN, ImageNet weights), student 2 a SegFormer MiT-B0
# (a small Transformer, trained from scratch: mmseg's MiT weights are not
# available offline). Different architectures couple less than two copies
# of one network. Stage 1.
_base_ = ['./rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py']
norm_cfg = dict(type='SyncBN', requires_grad=True)
segformer_mit_b0 = dict(
    type='EncoderDecoder',
    # One preprocessor normalises every batch for both students, so the
    # SegFormer uses EfficientNet-Lite's (x - 127) / 128; without
    # pretrained weights no other statistics are expected.
    data_preprocessor={{_base_.data_preprocessor}},
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
        # RML's stochastic depth (survival 0.8 at the last block).
        drop_path_rate=0.2),
    decode_head=dict(
        type='SegformerHead',
        in_channels=[32, 64, 160, 256],
        in_index=[0, 1, 2, 3],
        # 128 rather than SegFormer's 256, sized for CPU training like the
        # DeepLabV3+ student's 128-channel decoder.
        channels=128,
        dropout_ratio=0.1,
        num_classes=11,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
model = dict(
    segmentor2=dict(_delete_=True, **segformer_mit_b0),
    student2_noise=dict(dropout=0.5, drop_path=0.0))
