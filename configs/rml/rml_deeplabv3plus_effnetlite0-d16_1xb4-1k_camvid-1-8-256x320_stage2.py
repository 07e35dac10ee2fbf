# RML on CamVid 1-8, stage 2: both students and both teachers start from the
# stage-1 teachers (and their prototypes). Train stage 1 first with
# tools/train.py (default work_dir), or point stage2_init.checkpoint at
# another stage-1 checkpoint, e.g. with
# --cfg-options model.stage2_init.checkpoint=PATH.
_base_ = ['./rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py']
model = dict(
    stage2_init=dict(
        checkpoint='work_dirs/'
        'rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320/'
        'iter_1000.pth',
        load_rectifiers=True),
    # The networks are trained already: no supervised-only warm-up.
    unsup_start_iter=0)
