# U2PL's SupOnly baseline, VOC classic full (all 1,464 train images): 80
# epochs x ceil(1,464 / 16) = 80 x 92 = 7,360 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-80e_voc12-classic-1-16-513x513.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='ImageSets/Segmentation/train.txt'))
train_cfg = dict(max_iters=7360)
