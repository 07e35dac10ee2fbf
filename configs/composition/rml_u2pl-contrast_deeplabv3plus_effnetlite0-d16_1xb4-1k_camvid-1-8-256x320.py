# RML on CamVid 1/8 whose two students each carry U2PL's contrastive head:
# every student has its own representation head (EMA copy in its teacher)
# and its own contrastive loss and memory bank, fed by its own teacher's
# representations, probabilities and unreliable pixels. Everything else is
# ../rml/rml_..._camvid-1-8-256x320.py.
_base_ = [
    '../rml/rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py'
]
rep_channels = 64
model = dict(
    # U2PL's negatives are the unreliable pixels; RML's confidence labeler
    # with threshold 0 trusts every pixel and would leave none. The entropy
    # labeler filters the rectified probabilities instead.
    pseudo_labeler=dict(
        _delete_=True, type='EntropyPseudoLabeler', alpha_0=0.2),
    # As ../u2pl/u2pl_..._camvid-1-8-256x320.py; in_channels (the decode
    # head's `channels`) and num_classes are read from each student.
    rep_head=dict(
        type='RepresentationHead',
        channels=rep_channels,
        num_convs=1,
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    contrastive_loss=dict(
        type='U2PLContrastiveLoss',
        feat_channels=rep_channels,
        num_anchors=50,
        num_negatives=256,
        temperature=0.5,
        anchor_prob_threshold=0.3,
        low_rank=3,
        high_rank=20,
        queue_size=30000,
        loss_weight=0.1))
# The representation heads idle during the supervised warm-up: see
# ../u2pl/u2pl_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py.
find_unused_parameters = True
