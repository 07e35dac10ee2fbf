# U2PL's SupOnly baseline, VOC classic 1/4 (366 of the 1,464 train images):
# 80 epochs x ceil(366 / 16) = 80 x 23 = 1,840 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-80e_voc12-classic-1-16-513x513.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/voc-classic/1-4_seed0/labeled.txt'))
train_cfg = dict(max_iters=1840)
