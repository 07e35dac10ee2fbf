# U2PL's SupOnly baseline, Cityscapes 1/16 (186 of the 2,975 train images),
# the paper's setting for 8 GPUs: DeepLabV3+ R-101-D8, crop 769x769, batch
# 16 (8 x 2), 200 epochs (u2pl_cityscapes_200e.py), sliding-window test as
# mmseg's 769x769 Cityscapes configs.
# An epoch runs over the labeled images, as U2PL's SupOnly loader does:
# 200 x ceil(186 / 16) = 200 x 12 = 2,400 iterations.
# The sibling split configs change only the split and max_iters.
_base_ = [
    '../_base_/models/deeplabv3plus_r101-d8.py',
    '../_base_/datasets/cityscapes_769x769_semi.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/u2pl_cityscapes_200e.py'
]
crop_size = (769, 769)
data_preprocessor = dict(size=crop_size)
# OHEM on both heads as U2PL (pixels whose true-class probability is below
# 0.7, at least 100,000 per GPU batch: mmseg's min_kept counts per image,
# 2 x 50,000).
ohem = dict(type='OHEMPixelSampler', thresh=0.7, min_kept=50000)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(align_corners=True, sampler=ohem),
    auxiliary_head=dict(align_corners=True, sampler=ohem),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(513, 513)))
train_cfg = dict(max_iters=2400)
