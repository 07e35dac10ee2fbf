# Supervised-only baseline: the 46 labeled images of the 1/8 split.
_base_ = [
    '../_base_/models/deeplabv3plus_effnetlite0.py',
    '../_base_/datasets/camvid.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
