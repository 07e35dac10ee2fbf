# PASCAL VOC 2012 with U2PL's "classic" split protocol: the labeled images
# are drawn from the 1,464 finely annotated train images (masks from
# SegmentationClass) and every other image of the 10,582-image train_aug
# set is unlabeled (e.g. 1/16: 92 labeled, 1,372 + 9,118 = 10,490
# unlabeled). Validation on the 1,449 val images.
#
# data_root: $MMSEG_SEMI_VOC_ROOT if set, else data/VOCdevkit/VOC2012 (with
# mmseg's voc_aug.py run, which writes ImageSets/Segmentation/aug.txt: the
# 9,118 SBD images outside VOC train and val). Split files, relative to
# data_root, from tools/dataset_converters/make_semi_splits.py:
#   python tools/dataset_converters/make_semi_splits.py --dataset voc-classic \
#       --root data/VOCdevkit/VOC2012 --fraction 1/16 \
#       --out-dir data/VOCdevkit/VOC2012/splits/voc-classic
# writes splits/voc-classic/1-16_seed0/labeled.txt (92 names) and
# unlabeled.txt (the other 1,372 train images); the unlabeled set below adds
# aug.txt to the latter. The full split uses ImageSets/Segmentation/train.txt.
#
# Labeled batches: U2PL's geometry (random scale 0.5-2, 513x513 crop,
# flip) and no photometric change, as its pascal_voc.py build_transfrom.
# The unlabeled set (no masks needed) yields a weak and a strong view of each
# image with the same geometry; U2PL's only strong augmentation is the
# segmentor's CutMix (train_semi.py), so both views are the same image here.
# mean_teacher configs pass `unlabeled_dataloader` to SemiIterBasedTrainLoop;
# supervised ones ignore it.
_base_ = ['mmseg::_base_/datasets/pascal_voc12.py']
data_root = '{{$MMSEG_SEMI_VOC_ROOT:data/VOCdevkit/VOC2012}}'
crop_size = (513, 513)
split_dir = 'splits/voc-classic/1-16_seed0'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    # Geometry once, before branching: pseudo-labels need no re-projection.
    dict(
        type='RandomResize',
        scale=(2048, 512),
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
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        data_root=data_root,
        ann_file=split_dir + '/labeled.txt',
        pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
# The unlabeled images of the split's train images, and the SBD ones.
unlabeled_train_rest = dict(
    type={{_base_.dataset_type}},
    data_root=data_root,
    ann_file=split_dir + '/unlabeled.txt',
    data_prefix=dict(img_path='JPEGImages'),
    pipeline=unlabeled_pipeline)
unlabeled_aug = dict(
    type={{_base_.dataset_type}},
    data_root=data_root,
    ann_file='ImageSets/Segmentation/aug.txt',
    data_prefix=dict(img_path='JPEGImages'),
    pipeline=unlabeled_pipeline)
unlabeled_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ConcatDataset',
        datasets=[unlabeled_train_rest, unlabeled_aug]))
