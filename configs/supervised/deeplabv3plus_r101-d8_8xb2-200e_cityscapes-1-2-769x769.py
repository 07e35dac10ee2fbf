# U2PL's SupOnly baseline, Cityscapes 1/2 (1,488 of the 2,975 train images):
# 200 epochs x ceil(1,488 / 16) = 200 x 93 = 18,600 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-200e_cityscapes-1-16-769x769.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/cityscapes/1-2_seed0/labeled.txt'))
train_cfg = dict(max_iters=18600)
