# CamVid for semi-supervised training: the labeled split of camvid.py plus
# an unlabeled split (no masks needed) yielding a weak and a strong view of
# each image with the same geometry.
_base_ = ['./camvid.py', './strong_view.py']
unlabeled_split = '{{ fileDirname }}/../../../splits/camvid/1-8_seed0/unlabeled.txt'
unlabeled_pipeline = [
    dict(type='LoadImageFromFile'),
    # Geometry once, before branching: pseudo-labels need no re-projection.
    dict(
        type='RandomResize',
        scale=(480, 360),
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
        ann_file=unlabeled_split,
        data_prefix=dict(img_path='train'),
        pipeline=unlabeled_pipeline))
