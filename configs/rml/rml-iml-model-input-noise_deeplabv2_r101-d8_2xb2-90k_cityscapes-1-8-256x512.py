# RML ablation (Table 4), row "+ input noise" on Cityscapes 1/8, stage 1:
# IML plus model noise plus input noise (RandAugment's photometric ops on
# the strong view), i.e. the full RML config (the _base_ below) without
# self-rectification: the teachers' raw softmax labels the pixels. The
# last row, "+ self-rectification", is the full config itself.
# configs/rml/README.md lists the rows.
_base_ = ['./rml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-256x512.py']
model = dict(rectifier=None)
