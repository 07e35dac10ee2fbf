# RML on Cityscapes 1/30 with heterogeneous students, stage 1: student 1 is
# DeepLabv2 on ResNet-101 (a CNN, ImageNet weights), student 2 a SETR-PUP
# (Zheng et al., CVPR 2021: a ViT encoder and progressive upsampling) on
# ViT-B/16. Different architectures couple less than two copies of one
# network, which RML's paper reports as one of the ways to decouple the
# mutual learners.
# The ViT is trained from scratch: there are no ViT weights this project
# can load offline (mmseg's SETR configs load timm's ViT-L/16 from a local
# file). Expect a much weaker student 2 than with ImageNet-21k weights; set
# model.segmentor2.pretrained (or backbone.init_cfg) to a converted ViT-B/16
# checkpoint when you have one. ViT-B rather than SETR's ViT-L keeps the
# four networks trainable on the same GPUs; no auxiliary heads.
# Everything else (data, schedule, teachers, rectifiers) is the homogeneous
# 1/30 config's; stage 2 works as for that config (stage2_init).
_base_ = ['./rml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-30-256x512.py']
crop_size = (256, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
setr_pup_vit_b16 = dict(
    type='EncoderDecoder',
    # The wrapper normalises every batch once for both students, so SETR
    # uses the same (ImageNet) statistics as the ResNet.
    data_preprocessor={{_base_.data_preprocessor}},
    backbone=dict(
        type='VisionTransformer',
        img_size=crop_size,
        patch_size=16,
        in_channels=3,
        embed_dims=768,
        num_layers=12,
        num_heads=12,
        out_indices=(11, ),
        drop_rate=0.0,
        # RML's stochastic depth: mmseg's ViT raises the drop probability
        # linearly over the blocks to 0.2 at the last (survival 0.8).
        drop_path_rate=0.2,
        norm_cfg=dict(type='LN', eps=1e-6, requires_grad=True),
        with_cls_token=True,
        interpolate_mode='bilinear'),
    decode_head=dict(
        type='SETRUPHead',
        in_channels=768,
        channels=256,
        in_index=0,
        num_classes=19,
        dropout_ratio=0,
        norm_cfg=norm_cfg,
        # PUP: four 2x upsampling steps, back to the input resolution.
        num_convs=4,
        up_scale=2,
        kernel_size=3,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
model = dict(
    segmentor2=dict(_delete_=True, **setr_pup_vit_b16),
    # Dropout before SETR's classifier; its stochastic depth is the ViT's
    # drop_path_rate (apply_model_noise's drop_path is for ResNets).
    student2_noise=dict(dropout=0.5, drop_path=0.0))
