# Mean teacher, VOC classic 1/8 (183 labeled + 10,399 unlabeled images):
# 80 epochs x ceil(10,399 / 16) = 80 x 650 = 52,000 iterations, the first
# epoch (650 iterations) supervised only.
_base_ = [
    './mean-teacher_deeplabv3plus_r101-d8_8xb2-80e_voc12-classic-1-16-513x513.py'
]
model = dict(unsup_start_iter=650)
split_dir = 'splits/voc-classic/1-8_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
# Unlabeled: the rest of the train images, and the SBD ones.
train_cfg = dict(
    max_iters=52000,
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
