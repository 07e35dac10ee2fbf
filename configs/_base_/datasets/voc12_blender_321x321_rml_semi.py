# PASCAL VOC 2012 in the setting of RML's paper (and of the DeepLabv2
# semi-supervised works it compares with): labeled and unlabeled images
# are both drawn from the 10,582-image train_aug set (the project's
# "blender" protocol, see voc12_blender_semi.py for data_root and masks),
# 321x321 crops, validation on the 1,449 val images at their original size.
# Fractions 1/100, 1/50, 1/20 and 1/8 label 106, 212, 530 and 1,323 images
# (ceil(fraction * 10,582)).
#
# Split files, relative to data_root, from
# tools/dataset_converters/make_semi_splits.py, e.g. for 1/100:
#   python tools/dataset_converters/make_semi_splits.py --dataset voc-blender \
#       --root data/VOCdevkit/VOC2012 --fraction 1/100 \
#       --out-dir data/VOCdevkit/VOC2012/splits/voc-blender
# writes splits/voc-blender/1-100_seed0/labeled.txt (106 names) and
# unlabeled.txt (10,476 names). The run configs pick the split directory.
#
# The strong (student) view is RML's input noise: RandAugment's photometric
# operations (RandAugmentPhotometric: 2 ops a image, each with a magnitude
# drawn uniformly from [0, 1]), then CutMix in the model (model.cutmix).
# It is set here, whatever strong view the base config has (not
# strong_view.py's colour jitter, greyscale and blur of the CPU recipes).
#
# Batch: 5 labeled + 5 unlabeled images per GPU; the run configs train on
# 2 GPUs, i.e. RML's batch of 10 (Sec. 5.2) labeled + 10 unlabeled images
# per step.
_base_ = ['./voc12_blender_semi.py']
crop_size = (321, 321)
split_dir = 'splits/voc-blender/1-100_seed0'
strong_view = [
    dict(type='RandAugmentPhotometric', num_ops=2, magnitude_range=(0.0, 1.0)),
    dict(type='PackSegInputs'),
]
# DeepLabv2's augmentation: the image scaled by a random factor in
# [0.5, 1.5], a random crop and a flip. VOC images are at most 500 pixels
# on their long side, so fitting them into 500x500 times the ratio scales
# the original image by the ratio itself.
geometry = [
    dict(
        type='RandomResize',
        scale=(500, 500),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
] + geometry + [dict(type='PackSegInputs')]
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    # Geometry once, before branching: pseudo-labels need no re-projection.
    # No label to keep in the crop, so no category-ratio check.
    dict(
        type='RandomResize',
        scale=(500, 500),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branches=dict(weak=[dict(type='PackSegInputs')], strong=strong_view)),
]
# Whole images at their original size, one per batch.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=5,
    dataset=dict(
        ann_file=split_dir + '/labeled.txt', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
unlabeled_dataloader = dict(
    batch_size=5,
    dataset=dict(
        ann_file=split_dir + '/unlabeled.txt', pipeline=unlabeled_pipeline))
