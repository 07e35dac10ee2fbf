# Cityscapes in the setting of RML's paper (and of the DeepLabv2
# semi-supervised works it compares with): every image resized to 1024x512
# (half resolution), random 512x256 crops (mmseg's crop_size is (h, w) =
# (256, 512)) and flips; labeled and unlabeled images both drawn from the
# 2,975 fine train images. Validation on the 500 val images, predicted at
# 1024x512 and scored at full resolution. Fractions 1/30, 1/8 and 1/4 label
# 100, 372 and 744 images (ceil(fraction * 2,975)).
#
# data_root and the split layout as cityscapes_769x769_semi.py. Split
# files, relative to data_root, from
# tools/dataset_converters/make_semi_splits.py, e.g. for 1/30:
#   python tools/dataset_converters/make_semi_splits.py --dataset cityscapes \
#       --root data/cityscapes --fraction 1/30 \
#       --out-dir data/cityscapes/splits/cityscapes
# writes splits/cityscapes/1-30_seed0/labeled.txt (100 names) and
# unlabeled.txt (2,875 names). The run configs pick the split directory.
#
# The strong (student) view is RML's input noise: RandAugment's photometric
# operations (RandAugmentPhotometric: 2 ops a image, each with a magnitude
# drawn uniformly from [0, 1]), then CutMix in the model (model.cutmix).
# It is set here, whatever strong view the base config has (not
# strong_view.py's colour jitter, greyscale and blur of the CPU recipes).
#
# Batch: 2 labeled + 2 unlabeled images per GPU; the run configs train on
# 2 GPUs, i.e. RML's batch of 4 (Sec. 5.2) labeled + 4 unlabeled images per
# step.
_base_ = ['./cityscapes_769x769_semi.py']
crop_size = (256, 512)
image_scale = (1024, 512)
split_dir = 'splits/cityscapes/1-30_seed0'
strong_view = [
    dict(type='RandAugmentPhotometric', num_ops=2, magnitude_range=(0.0, 1.0)),
    dict(type='PackSegInputs'),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    # Geometry once, before branching: pseudo-labels need no re-projection.
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branches=dict(weak=[dict(type='PackSegInputs')], strong=strong_view)),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    # Annotations after Resize: the metric compares with full-size labels.
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        ann_file=split_dir + '/labeled.txt', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
unlabeled_dataloader = dict(
    batch_size=2,
    dataset=dict(
        ann_file=split_dir + '/unlabeled.txt', pipeline=unlabeled_pipeline))
