# RML ablation (Table 4), row "IML" on Cityscapes 1/8, stage 1: mutual
# learning through the two mean teachers as in the full RML config, without
# RML's three additions: no model noise (no dropout, no stochastic depth on
# the students), no input noise (the strong view is the weak view:
# RandAugmentPhotometric removed; CutMix kept, as in every row) and no
# self-rectification (the teachers' raw softmax labels the pixels).
# Everything else is the full config's. The _base_ is the "+ model noise"
# row (full config without input noise and self-rectification); this file
# removes its model noise. configs/rml/README.md lists the rows.
_base_ = [
    './rml-iml-model-noise_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-'
    '256x512.py'
]
model = dict(student1_noise=None, student2_noise=None)
