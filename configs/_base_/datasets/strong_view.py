# The strong view of an unlabeled image (U2PL's and the CPU recipes'
# photometric augmentations; geometry is shared with the weak view and
# comes before the branches). Probability gates and greyscale are mmcv's.
strong_view = [
    dict(
        type='RandomApply',
        transforms=[dict(type='RandomColorJitter')],
        prob=0.8),
    # ITU-R 601 luma of a BGR image, on three channels.
    dict(
        type='RandomGrayscale',
        prob=0.2,
        keep_channels=True,
        channel_weights=(0.114, 0.587, 0.299)),
    dict(
        type='RandomApply',
        transforms=[dict(type='RandomGaussianBlur')],
        prob=0.5),
    dict(type='PackSegInputs'),
]
