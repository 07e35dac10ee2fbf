# Mean teacher, VOC classic full (1,464 labeled + 9,118 unlabeled images):
# 80 epochs x ceil(9,118 / 16) = 80 x 570 = 45,600 iterations, the first
# epoch (570 iterations) supervised only.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_voc12-classic-1-16-513x513.py'
]
model = dict(unsup_start_iter=570)
train_dataloader = dict(
    dataset=dict(ann_file='ImageSets/Segmentation/train.txt'))
# Unlabeled: the 9,118 SBD images only.
train_cfg = dict(
    max_iters=45600,
    unlabeled_dataloader=dict(
        dataset=dict(datasets=[{{_base_.unlabeled_aug}}])))
