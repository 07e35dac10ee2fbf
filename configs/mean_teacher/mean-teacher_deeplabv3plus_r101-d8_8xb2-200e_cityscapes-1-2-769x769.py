# Mean teacher, Cityscapes 1/2 (1,488 labeled + 1,487 unlabeled images):
# 200 epochs x ceil(1,487 / 16) = 200 x 93 = 18,600 iterations.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-200e_cityscapes-1-16-769x769.py'
]
split_dir = 'splits/cityscapes/1-2_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    max_iters=18600,
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
