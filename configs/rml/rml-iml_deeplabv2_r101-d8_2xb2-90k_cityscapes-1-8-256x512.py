# RML ablation (Table 4), row "IML" on Cityscapes 1/8, stage 1: mutual
# learning through the two mean teachers as in the full RML config (the
# _base_ below), without RML's three additions: no model noise (no
# dropout, no stochastic depth on the students), no input noise (the
# strong view is the weak view: RandAugmentPhotometric removed; CutMix
# kept, as in every row) and no self-rectification (the teachers' raw
# softmax labels the pixels). Everything else is the full config's.
# configs/rml/README.md lists the rows.
_base_ = ['./rml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-8-256x512.py']
# No input noise: the strong branch packs the image unchanged.
unlabeled_pipeline = _base_.unlabeled_pipeline[:-1] + [
    dict(
        type='MultiBranch',
        branches=dict(
            weak=[dict(type='PackSegInputs')],
            strong=[dict(type='PackSegInputs')]))
]
train_cfg = dict(
    unlabeled_dataloader=dict(dataset=dict(pipeline=unlabeled_pipeline)))
model = dict(student1_noise=None, student2_noise=None, rectifier=None)
