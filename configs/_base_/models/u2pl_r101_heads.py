# What U2PL adds to a DeepLabV3+ R-101-D8 mean teacher (Sec. 3.3 and 4.1):
# a representation head on the decoder features and the pixel contrastive
# loss with unreliable pixels as negatives (Eq. 4, 9-16). The U2PL configs
# inherit a mean-teacher paper config and this file, and plug these two
# dicts into `model` (mmengine forbids a key defined in two bases, hence
# the names that are not `model`):
#
#   model = dict(
#       rep_head=_base_.u2pl_rep_head,
#       contrastive_loss=_base_.u2pl_contrastive_loss)
#
# (the loss's num_classes is read from the student).
u2pl_rep_channels = 256  # representation dimension D (Sec. 4.1)
u2pl_rep_head = dict(
    type='RepresentationHead',
    # U2PL's decoder (u2pl/models/decoder.py, dec_deeplabv3_plus.forward)
    # feeds the concatenation of ASPP and low-level features to the
    # classifier and the representation head in parallel. In mmseg's
    # DepthwiseSeparableASPPHead that tensor enters `sep_bottleneck`:
    # channels + c1_channels = 512 + 48 channels (deeplabv3plus_r50-d8,
    # kept by the R-101 model). The contrastive loss then does not train
    # the classifier's own conv blocks.
    feature_source='sep_bottleneck',
    in_channels=560,
    channels=u2pl_rep_channels,
    # "two Conv-BN-ReLU blocks" (Sec. 4.1); the released code adds Dropout2d
    # 0.1 after each and a linear 1x1 projection (RepresentationHead).
    num_convs=2,
    dropout_ratio=0.1,
    norm_cfg=dict(type='SyncBN', requires_grad=True))
u2pl_contrastive_loss = dict(
    type='U2PLContrastiveLoss',
    feat_channels=u2pl_rep_channels,
    # M = 50 anchors per class and N = 256 negatives per anchor, the
    # paper's values (Sec. 4.1). The released experiments/*/config.yaml
    # use the reverse (num_queries: 256 anchors, num_negatives: 50).
    num_anchors=50,
    num_negatives=256,
    temperature=0.5,  # tau
    anchor_prob_threshold=0.3,  # delta_p (Eq. 11)
    # r_l and r_h (Eq. 14-15), the same on VOC and Cityscapes in the
    # released configs; with Cityscapes' 19 classes the loss clamps r_h to
    # 19 (every rank from r_l on).
    low_rank=3,
    high_rank=20,
    queue_size=30000,  # per class (Eq. 16)
    # Keys each GPU enqueues per class per step, sampled uniformly on each
    # rank before the gather (not in the paper or its code). With every
    # unreliable pixel a negative for ~17 classes, 8 GPUs offer ~43k (VOC)
    # / ~100k (Cityscapes) keys per class per step; uncapped, the 30000
    # queue is overwritten each step by the highest ranks' keys only.
    # 8 GPUs x 1875 = 15000 = 30000 / 2: equal shares, two steps per queue.
    max_push_per_class=1875,
    loss_weight=0.1)  # lambda_c (Eq. 1)
# The representation head gets no gradient during the supervised-only
# warm-up (unsup_start_iter), which DDP refuses at the next step unless it
# looks for unused parameters.
find_unused_parameters = True
