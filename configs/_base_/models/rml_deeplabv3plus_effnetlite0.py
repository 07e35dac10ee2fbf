# RML (robust mutual learning): two DeepLabV3+ EfficientNet-Lite0 students,
# each with its own EMA teacher and prototype rectifier.
_base_ = ['./deeplabv3plus_effnetlite0.py']
model = dict(
    _delete_=True,
    type='DualStudentSegmentor',
    segmentor1={{_base_.model}},
    segmentor2={{_base_.model}},
    # Model noise (Noisy Student, as in RML): dropout before the classifier.
    # EfficientNet-Lite's stochastic depth is its backbone.drop_path_rate
    # (set per student in the dataset configs), so apply_model_noise's
    # ResNet-only drop_path stays 0.
    student1_noise=dict(dropout=0.5, drop_path=0.0),
    student2_noise=dict(dropout=0.5, drop_path=0.0),
    rectifier=dict(type='PrototypeRectifier', momentum=0.9999),
    # RML's pseudo-labels: the hard arg-max of the rectified probabilities
    # on every valid pixel (threshold 0 selects them all, weight 1).
    pseudo_labeler=dict(type='ConfidencePseudoLabeler', threshold=0.0),
    cutmix=dict(prob=1.0),
    # Eq. 5: each student learns from its own and from its peer's teacher.
    sup_weight=1.0,
    unsup1_own_weight=1.0,
    unsup1_peer_weight=1.0,
    unsup2_own_weight=1.0,
    unsup2_peer_weight=1.0,
    predict_on='teacher1',
    # NHWC convolutions: 30% faster training steps on CPU, same model.
    channels_last=True)
