# DeepLabV3+ on ResNet-101, output stride 8: the network of U2PL (Sec. 4.1).
# mmseg's DeepLabV3+ R-50-D8 with depth 101: ResNetV1c (deep stem) with
# ImageNet weights, stages 3 and 4 dilated (strides (1, 2, 1, 1), dilations
# (1, 1, 2, 4)), ASPP rates (1, 12, 24, 36) as U2PL uses at output stride 8,
# SyncBN, and an FCN auxiliary head on stage 3 (U2PL's Cityscapes aux loss,
# weight 0.4; its VOC configs have none and remove it). U2PL's released code
# also uses multi-grid (1, 2, 4) in the last stage (dilations 4, 8, 16 in its
# three blocks). Cross-entropy is U2PL's: the mean over the labeled pixels
# (over the pixels OHEM keeps, with OHEM), not mmseg's mean over all pixels.
_base_ = ['mmseg::_base_/models/deeplabv3plus_r50-d8.py']
model = dict(
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(depth=101, multi_grid=(1, 2, 4)),
    decode_head=dict(
        loss_decode=dict(
            type='ClassWeightedCrossEntropyLoss', loss_weight=1.0)),
    auxiliary_head=dict(
        loss_decode=dict(
            type='ClassWeightedCrossEntropyLoss', loss_weight=0.4)))
