# U2PL's SupOnly baseline, VOC blender 1/2 (5,291 of the 10,582 train_aug
# images): 80 epochs x ceil(5,291 / 16) = 80 x 331 = 26,480 iterations.
_base_ = [
    './deeplabv3plus_r101-d8_8xb2-80e_voc12-blender-1-16-513x513.py'
]
train_dataloader = dict(
    dataset=dict(ann_file='splits/voc-blender/1-2_seed0/labeled.txt'))
train_cfg = dict(max_iters=26480)
