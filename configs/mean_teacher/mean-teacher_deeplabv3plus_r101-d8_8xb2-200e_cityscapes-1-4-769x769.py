# Mean teacher, Cityscapes 1/4 (744 labeled + 2,231 unlabeled images):
# 200 epochs x ceil(2,231 / 16) = 200 x 140 = 28,000 iterations.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-200e_cityscapes-1-16-769x769.py'
]
split_dir = 'splits/cityscapes/1-4_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    max_iters=28000,
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
