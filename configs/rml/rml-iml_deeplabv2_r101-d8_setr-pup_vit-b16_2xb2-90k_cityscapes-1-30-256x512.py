# RML ablation (Table 5's setting): IML with heterogeneous students on
# Cityscapes 1/30, stage 1: the DeepLabv2 ResNet-101 + SETR-PUP ViT-B/16
# config (the _base_ below) without RML's three additions, removed as in
# rml-iml_deeplabv2_..._cityscapes-1-8-256x512.py: no model noise (no
# dropout; no stochastic depth: the ViT's drop_path_rate is 0), no input
# noise (the strong view is the weak view: RandAugmentPhotometric removed;
# CutMix kept) and no self-rectification. Only the two architectures
# decouple the students.
_base_ = [
    './rml_deeplabv2_r101-d8_setr-pup_vit-b16_2xb2-90k_'
    'cityscapes-1-30-256x512.py'
]
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
model = dict(
    segmentor2=dict(backbone=dict(drop_path_rate=0.0)),
    student1_noise=None,
    student2_noise=None,
    rectifier=None)
