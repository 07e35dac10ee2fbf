# Mean teacher, VOC blender 1/2 (5,291 labeled + 5,291 unlabeled images):
# 80 epochs x ceil(5,291 / 16) = 80 x 331 = 26,480 iterations, the first
# epoch (331 iterations) supervised only.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_voc12-blender-1-16-513x513.py'
]
model = dict(unsup_start_iter=331)
split_dir = 'splits/voc-blender/1-2_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    max_iters=26480,
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
