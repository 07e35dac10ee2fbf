# Supervised-only baseline: the 92 labeled images of the 1/4 split.
_base_ = ['./deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py']
train_dataloader = dict(
    dataset=dict(
        ann_file='{{ fileDirname }}/../../splits/camvid/1-4_seed0/labeled.txt'))
