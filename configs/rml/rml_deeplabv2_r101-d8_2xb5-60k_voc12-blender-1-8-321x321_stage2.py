# RML stage 2 of ./rml_deeplabv2_r101-d8_2xb5-60k_voc12-blender-1-8-321x321.py:
# both students and both teachers start from the stage-1 teachers (and
# their prototypes): a warm restart. The schedule starts afresh (iteration
# 0, lr 1e-4, the EMA ramp) and the pseudo-labels stay online, made by the
# stage-2 teachers at every step (configs/rml/README.md, "Two stages").
# Train stage 1 first with tools/train.py (default work_dir), or point
# stage2_init.checkpoint at another stage-1 checkpoint, e.g. with
# --cfg-options model.stage2_init.checkpoint=PATH.
_base_ = ['./rml_deeplabv2_r101-d8_2xb5-60k_voc12-blender-1-8-321x321.py']
model = dict(
    stage2_init=dict(
        checkpoint='work_dirs/'
        'rml_deeplabv2_r101-d8_2xb5-60k_voc12-blender-1-8-321x321/'
        'iter_60000.pth',
        load_rectifiers=True),
    # The networks are trained already: no supervised-only warm-up.
    unsup_start_iter=0)
