# CCP for semi-supervised training: the labeled split of ccp.py plus the
# other training photos as unlabeled data (no masks read), each yielding a
# weak and a strong view with the same geometry (as camvid_semi.py).
_base_ = ['./ccp.py', './strong_view.py']
unlabeled_split = 'splits/unlabeled_1of8.txt'
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResize',
        scale=(416, 275),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size={{_base_.crop_size}}, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='MultiBranch',
        branches=dict(
            weak=[dict(type='PackSegInputs')],
            strong={{_base_.strong_view}})),
]
unlabeled_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type={{_base_.dataset_type}},
        data_root={{_base_.data_root}},
        # The split lists "train/NAME", relative to img_dir.
        ann_file=unlabeled_split,
        data_prefix=dict(img_path='img_dir'),
        pipeline=unlabeled_pipeline))
