# RML (robust mutual learning, Zhang et al., 2021) with the paper's network:
# two DeepLabv2 ResNet-101 students, each with its own EMA teacher and
# prototype rectifier (in the 2048-d backbone feature space that enters the
# DeepLabv2 classifier).
_base_ = ['./deeplabv2_r101.py']
model = dict(
    _delete_=True,
    type='DualStudentSegmentor',
    # One preprocessor normalises every batch for both students; the run
    # configs add the crop size to it and to each segmentor.
    data_preprocessor={{_base_.data_preprocessor}},
    segmentor1={{_base_.model}},
    segmentor2={{_base_.model}},
    # Model noise as in Noisy Student: dropout 0.5 before the classifier and
    # stochastic depth with survival 0.8 at the last residual block (linear
    # rule), through apply_model_noise (mmseg ResNet).
    student1_noise=dict(dropout=0.5, drop_path=0.2),
    student2_noise=dict(dropout=0.5, drop_path=0.2),
    rectifier=dict(type='PrototypeRectifier', momentum=0.9999),
    # RML's pseudo-labels: the hard arg-max of the rectified probabilities
    # on every valid pixel (threshold 0 selects them all, weight 1).
    pseudo_labeler=dict(type='ConfidencePseudoLabeler', threshold=0.0),
    # The paper's raw teacher softmax (no distribution alignment).
    class_balance=None,
    # Input noise: the dataset configs' strong view (RandAugment's
    # photometric ops), then CutMix of the strong view and the labels.
    cutmix=dict(prob=1.0),
    # Eq. 5: each student learns from its own and from its peer's teacher.
    sup_weight=1.0,
    unsup1_own_weight=1.0,
    unsup1_peer_weight=1.0,
    unsup2_own_weight=1.0,
    unsup2_peer_weight=1.0,
    predict_on='teacher1',
    # Supervised-only warm-up (an assumption: ImageNet-initialised teachers
    # label noise at first); the EMA hook copies each student into its
    # teacher until then.
    unsup_start_iter=2000)
