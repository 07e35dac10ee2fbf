# Mean teacher, VOC blender 1/8 (1,323 labeled + 9,259 unlabeled images):
# 80 epochs x ceil(9,259 / 16) = 80 x 579 = 46,320 iterations, the first
# epoch (579 iterations) supervised only.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_voc12-blender-1-16-513x513.py'
]
model = dict(unsup_start_iter=579)
split_dir = 'splits/voc-blender/1-8_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    max_iters=46320,
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
