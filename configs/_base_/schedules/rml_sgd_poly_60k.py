# Schedule of the RML paper configs on PASCAL VOC: 60k iterations per stage
# (RML Sec. 5.2: 60k iterations at batch 10 on VOC; the run configs hold
# the batch). Everything else is the Cityscapes schedule,
# rml_sgd_poly_90k.py: SGD lr 1e-4, poly decay to 0 over the stage,
# validation and checkpoints every 5k iterations, EMA decay 0.999.
_base_ = ['./rml_sgd_poly_90k.py']
max_iters = 60000
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=max_iters)
