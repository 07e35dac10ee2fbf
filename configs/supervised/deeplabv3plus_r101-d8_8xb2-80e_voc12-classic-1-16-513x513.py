# U2PL's SupOnly baseline, PASCAL VOC 2012 classic 1/16 (92 of the 1,464
# train images), the paper's setting for 8 GPUs: DeepLabV3+ R-101-D8, crop
# 513x513, batch 16 (8 x 2), 80 epochs (u2pl_voc12_80e.py).
# An epoch runs over the labeled images, as U2PL's SupOnly loader does:
# 80 x ceil(92 / 16) = 80 x 6 = 480 iterations.
# The sibling split configs change only the split and max_iters.
_base_ = [
    '../_base_/models/deeplabv3plus_r101-d8.py',
    '../_base_/datasets/voc12_classic_semi.py',
    '../_base_/default_runtime.py', '../_base_/schedules/u2pl_voc12_80e.py'
]
crop_size = (513, 513)
data_preprocessor = dict(size=crop_size)
# U2PL's VOC configs train the decoder alone with plain cross-entropy
# (experiments/pascal/*/config.yaml: criterion CELoss, no aux_loss; OHEM and
# the auxiliary head belong to its Cityscapes configs), and align corners
# (513 = 64 * 8 + 1).
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21, align_corners=True),
    auxiliary_head=None)
train_cfg = dict(max_iters=480)
