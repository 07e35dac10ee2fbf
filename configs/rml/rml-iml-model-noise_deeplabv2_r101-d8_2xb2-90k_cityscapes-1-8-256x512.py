# RML ablation (Table 4), row "+ model noise" on Cityscapes 1/8, stage 1:
# IML (rml-iml_..._cityscapes-1-8-256x512.py) plus the students' model
# noise (dropout 0.5, stochastic depth 0.2), i.e. the full RML config (the
# _base_ below) without input noise (the strong view is the weak view:
# RandAugmentPhotometric removed; CutMix kept, as in every row) and
# without self-rectification. configs/rml/README.md lists the rows.
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
model = dict(rectifier=None)
