# U2PL's SupOnly baseline, Cityscapes 1/8 (372 of the 2,975 train images):
# 200 epochs x ceil(372 / 16) = 200 x 24 = 4,800 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-200e_cityscapes-1-16-769x769.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/cityscapes/1-8_seed0/labeled.txt'))
train_cfg = dict(max_iters=4800)
