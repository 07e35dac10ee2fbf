# U2PL's SupOnly baseline, Cityscapes 1/4 (744 of the 2,975 train images):
# 200 epochs x ceil(744 / 16) = 200 x 47 = 9,400 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-200e_cityscapes-1-16-769x769.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/cityscapes/1-4_seed0/labeled.txt'))
train_cfg = dict(max_iters=9400)
