# U2PL on CamVid 1/8: the mean-teacher config plus U2PL's representation head
# and pixel contrastive loss with unreliable pixels as negatives (Eq. 4,
# 9-16). Paper values except where the CPU budget needs smaller ones: the
# representation is 64-d (paper: 256) and the head has one 3x3 block.
_base_ = [
    '../mean_teacher/'
    'mean-teacher_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py'
]
rep_channels = 64
model = dict(
    rep_head=dict(
        type='RepresentationHead',
        in_channels=128,  # the decode head's `channels`
        channels=rep_channels,
        num_convs=1,
        norm_cfg=dict(type='SyncBN', requires_grad=True)),
    contrastive_loss=dict(
        type='U2PLContrastiveLoss',
        num_classes=11,
        feat_channels=rep_channels,
        num_anchors=50,
        num_negatives=256,
        temperature=0.5,
        anchor_prob_threshold=0.3,
        low_rank=3,
        high_rank=20,
        queue_size=30000,
        loss_weight=0.1))
# The representation head gets no gradient during the supervised-only
# warm-up (unsup_start_iter), which DDP refuses at the next step unless it
# looks for unused parameters (it then leaves their gradients None, as a
# single process does).
find_unused_parameters = True
