# Mean teacher around DeepLabV3+ EfficientNet-Lite0: entropy pseudo-labeler
# (U2PL Eq. 5-8), CutMix, EMA teacher (the EMATeacherHook in the configs).
_base_ = ['./deeplabv3plus_effnetlite0.py']
model = dict(
    _delete_=True,
    type='MeanTeacherSegmentor',
    segmentor={{_base_.model}},
    pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
    cutmix=dict(prob=1.0),
    # Supervised-only warm-up (U2PL trains one epoch without the
    # unsupervised loss); the EMA hook copies the student until then.
    unsup_start_iter=100,
    # NHWC convolutions: faster training steps on CPU, same model.
    channels_last=True)
