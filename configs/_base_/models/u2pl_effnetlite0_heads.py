# U2PL's additions for the CamVid DeepLabV3+ EfficientNet-Lite0 configs:
# the representation head and the pixel contrastive loss with unreliable
# pixels as negatives (Eq. 4, 9-16). Paper values except where the CPU
# budget needs smaller ones: the representation is 64-d (paper: 256) and
# the head has one 3x3 block. Only `u2pl_*` names (plus DDP's flag), so it
# combines with any model config in `_base_`; the head's `in_channels` and
# the loss's `num_classes` are read from the student.
u2pl_rep_channels = 64
u2pl_rep_head = dict(
    type='RepresentationHead',
    channels=u2pl_rep_channels,
    num_convs=1,
    norm_cfg=dict(type='SyncBN', requires_grad=True))
u2pl_contrastive_loss = dict(
    type='U2PLContrastiveLoss',
    feat_channels=u2pl_rep_channels,
    num_anchors=50,
    num_negatives=256,
    temperature=0.5,
    anchor_prob_threshold=0.3,
    low_rank=3,
    high_rank=20,
    queue_size=30000,
    loss_weight=0.1)
# The representation head gets no gradient during the supervised-only
# warm-up (unsup_start_iter), which DDP refuses at the next step unless it
# looks for unused parameters (it then leaves their gradients None, as a
# single process does).
find_unused_parameters = True
