# Clothing Co-Parsing, 11 merged groups (shared/data/ccp and its README),
# labeled split only. Background covers ~77% of the labelled pixels.
# data_root: $MMSEG_SEMI_CCP_ROOT if set, else data/ccp
# (`ln -s ../shared/data/ccp data/ccp`).
dataset_type = 'CCPDataset'
data_root = '{{$MMSEG_SEMI_CCP_ROOT:data/ccp}}'
labeled_split = 'splits/labeled_1of8.txt'
# Photos are about 275 x 416 (w x h); crops are 320 x 256 (h x w), the
# pixel count of the CamVid crops.
crop_size = (320, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=11),
    dict(
        type='RandomResize',
        scale=(416, 275),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# Evaluated at the stored size, as the data's README's protocol says.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=11),
    dict(type='PackSegInputs'),
]
# tools/test.py --tta, mmseg's convention: six scales of the stored size
# x no flip / flip; tta_model (mmseg's SegTTAModel, from
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
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
# CCP has no validation split: validation runs on the test photos, and the
# benchmark reports the final checkpoint (never a checkpoint picked on it).
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='splits/test.txt',
        data_prefix=dict(img_path='img_dir/test', seg_map_path='ann_dir/test'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
