# Mean teacher, VOC classic 1/2 (732 labeled + 9,850 unlabeled images):
# 80 epochs x ceil(9,850 / 16) = 80 x 616 = 49,280 iterations, the first
# epoch (616 iterations) supervised only.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_voc12-classic-1-16-513x513.py'
]
model = dict(unsup_start_iter=616)
split_dir = 'splits/voc-classic/1-2_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
# Unlabeled: the rest of the train images, and the SBD ones.
train_cfg = dict(
    max_iters=49280,
    unlabeled_dataloader=dict(
        dataset=dict(datasets=[
            dict(
                type={{_base_.dataset_type}},
                data_root={{_base_.data_root}},
                ann_file=split_dir + '/unlabeled.txt',
                data_prefix=dict(img_path='JPEGImages'),
                pipeline={{_base_.unlabeled_pipeline}}),
            {{_base_.unlabeled_aug}},
        ])))
