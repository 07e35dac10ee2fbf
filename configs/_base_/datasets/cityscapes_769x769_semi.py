# Cityscapes at U2PL's 769x769 crop: labeled and unlabeled images both drawn
# from the 2,975 fine train images (e.g. 1/16: 186 labeled, 2,789
# unlabeled). Validation on the 500 val images.
#
# data_root: $MMSEG_SEMI_CITYSCAPES_ROOT if set, else data/cityscapes
# (mmseg layout, *_labelTrainIds.png from mmseg's cityscapes.py converter).
# Split files, relative to data_root, from
# tools/dataset_converters/make_semi_splits.py:
#   python tools/dataset_converters/make_semi_splits.py --dataset cityscapes \
#       --root data/cityscapes --fraction 1/16 \
#       --out-dir data/cityscapes/splits/cityscapes
# writes splits/cityscapes/1-16_seed0/labeled.txt (186 names such as
# aachen/aachen_000000_000019) and unlabeled.txt (2,789 names).
#
# Labeled batches: mmseg's cityscapes_769x769 geometry (random scale
# 0.5-2, 769x769 crop, flip) without its PhotoMetricDistortion: U2PL's
# cityscapes.py applies no photometric change. The unlabeled set (no masks
# needed) yields a weak and a strong view of each image with the same
# geometry; U2PL's only strong augmentation is the segmentor's CutMix
# (train_semi.py), so both views are the same image here. mean_teacher
# configs pass `unlabeled_dataloader` to SemiIterBasedTrainLoop; supervised
# ones ignore it.
_base_ = ['mmseg::_base_/datasets/cityscapes_769x769.py']
data_root = '{{$MMSEG_SEMI_CITYSCAPES_ROOT:data/cityscapes}}'
crop_size = (769, 769)
split_dir = 'splits/cityscapes/1-16_seed0'
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    # Geometry once, before branching: pseudo-labels need no re-projection.
    dict(
        type='RandomResize',
        scale=(2049, 1025),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branches=dict(
            weak=[dict(type='PackSegInputs')],
            strong=[dict(type='PackSegInputs')])),
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2049, 1025),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        data_root=data_root,
        ann_file=split_dir + '/labeled.txt',
        pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
unlabeled_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type={{_base_.dataset_type}},
        data_root=data_root,
        ann_file=split_dir + '/unlabeled.txt',
        data_prefix=dict(img_path='leftImg8bit/train'),
        pipeline=unlabeled_pipeline))
