# Schedule of the RML paper configs on Cityscapes: 90k iterations per stage
# (RML Sec. 5.2: 90k iterations at batch 4 on Cityscapes; the run configs
# hold the batch). SGD (momentum 0.9, weight decay 5e-4, DeepLabv2's values),
# lr 1e-4 with poly decay (power 0.9) to 0 over the stage. Both stages use
# this schedule; stage 2 starts it afresh (iteration 0, lr 1e-4).
# lr 1e-4 poly is the setting recorded in the project's issue. VOC's 60k
# schedule is rml_sgd_poly_60k.py.
# Override with --cfg-options train_cfg.max_iters=... (PolyLR's `end` and
# the stage-2 checkpoint name follow max_iters only if changed with it).
max_iters = 90000
# Validation and checkpoints every 5k iterations (and at the last one).
interval = 5000
optimizer = dict(type='SGD', lr=0.0001, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
# Both stages train two students on labeled and unlabeled batches (the
# run configs add the dataset's unlabeled_dataloader).
train_cfg = dict(
    type='SemiIterBasedTrainLoop', max_iters=max_iters, val_interval=interval)
# Reports teacher1/, student1/, teacher2/, student2/ and ensemble/ metrics.
val_cfg = dict(type='TeacherStudentValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # The last iteration is always saved too: stage 2 starts from
    # iter_<max_iters>.pth.
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=interval,
        max_keep_ckpts=2,
        save_best='teacher1/mIoU',
        rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
# EMA decay 0.999 (this project's choice, not the paper's number) rather
# than the CamVid configs' 0.99: tens of thousands of steps (the
# mean-teacher value for long schedules).
custom_hooks = [dict(type='EMATeacherHook', decay=0.999, warmup=True)]
