# U2PL's SupOnly baseline, VOC blender 1/8 (1,323 of the 10,582 train_aug
# images): 80 epochs x ceil(1,323 / 16) = 80 x 83 = 6,640 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-80e_voc12-blender-1-16-513x513.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/voc-blender/1-8_seed0/labeled.txt'))
train_cfg = dict(max_iters=6640)
