# RML on CamVid 1/8 whose two students each carry U2PL's contrastive head:
# every student has its own representation head (EMA copy in its teacher)
# and its own contrastive loss and memory bank, fed by its own teacher's
# representations, probabilities and unreliable pixels. Everything else is
# ../rml/rml_..._camvid-1-8-256x320.py.
_base_ = [
    '../rml/rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py',
    '../_base_/models/u2pl_effnetlite0_heads.py'
]
model = dict(
    # U2PL's negatives are the unreliable pixels that the RML CamVid
    # config's entropy labeler leaves out of the pseudo-labels.
    # As ../u2pl/u2pl_..._camvid-1-8-256x320.py; in_channels (the decode
    # head's `channels`) and num_classes are read from each student.
    rep_head=_base_.u2pl_rep_head,
    contrastive_loss=_base_.u2pl_contrastive_loss)
