# Mean teacher, VOC blender 1/4 (2,646 labeled + 7,936 unlabeled images):
# 80 epochs x ceil(7,936 / 16) = 80 x 496 = 39,680 iterations, the first
# epoch (496 iterations) supervised only.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_voc12-blender-1-16-513x513.py'
]
model = dict(unsup_start_iter=496)
split_dir = 'splits/voc-blender/1-4_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    max_iters=39680,
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
