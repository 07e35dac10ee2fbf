# U2PL's SupOnly baseline, VOC classic 1/2 (732 of the 1,464 train images):
# 80 epochs x ceil(732 / 16) = 80 x 46 = 3,680 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-80e_voc12-classic-1-16-513x513.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/voc-classic/1-2_seed0/labeled.txt'))
train_cfg = dict(max_iters=3680)
