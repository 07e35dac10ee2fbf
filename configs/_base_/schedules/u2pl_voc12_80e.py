# U2PL's PASCAL VOC 2012 schedule (Sec. 4.1 and its released configs): SGD,
# lr 0.001 on the backbone and 10x on the decoder, momentum 0.9, weight
# decay 1e-4, poly decay (power 0.9) to 0, batch 16 (8 GPUs x 2), 80 epochs.
#
# mmengine trains by iterations, so each config sets
# train_cfg.max_iters = 80 * ceil(N / 16), N being the images one epoch
# runs over (see the config); PolyLR's `end` defaults to max_iters.
optimizer = dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0001)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=optimizer,
    paramwise_cfg=dict(
        custom_keys={'decode_head': dict(lr_mult=10.)}),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=2000,
        max_keep_ckpts=2,
        save_best='mIoU',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
