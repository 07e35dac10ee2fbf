# Supervised-only baseline on CCP 1/8: the 88 labeled photos.
_base_ = [
    '../_base_/models/deeplabv3plus_effnetlite0.py',
    '../_base_/datasets/ccp.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_1k.py'
]
