# RML (Zhang et al., 2021, arXiv 2106.00609) in the paper's setting,
# Cityscapes 1/30 (100 labeled + 2,875 unlabeled images), stage 1: two
# DeepLabv2 ResNet-101 students with model noise (dropout 0.5, stochastic
# depth), input noise (RandAugment's photometric ops, then CutMix), EMA
# teachers with prototype rectification, mutual pseudo-label losses
# (Eq. 5). Images at 1024x512, 512x256 crops.
# Schedule (Sec. 5.2): 90k iterations at batch 4, per stage. "Batch 4" is
# read as 4 labeled images per step, with as many unlabeled ones: 2 GPUs x
# (2 labeled + 2 unlabeled), hence the name's 2xb2. SGD lr 1e-4 poly
# (rml_sgd_poly_90k.py). Stage 2 is
# ./rml_..._cityscapes-1-30-256x512_stage2.py.
# The split files come from make_semi_splits.py --fraction 1/30 (see
# ../_base_/datasets/cityscapes_1024x512_rml_semi.py).
# The sibling split configs (1/8, 1/4) change only the split.
_base_ = [
    '../_base_/models/rml_deeplabv2_r101.py',
    '../_base_/datasets/cityscapes_1024x512_rml_semi.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/rml_sgd_poly_90k.py'
]
crop_size = (256, 512)
num_classes = 19
data_preprocessor = dict(size=crop_size)
segmentor = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=num_classes))
model = dict(
    data_preprocessor=data_preprocessor,
    segmentor1=segmentor,
    segmentor2=segmentor)
split_dir = 'splits/cityscapes/1-30_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
# The semi loop, the teacher/student validation and the EMA hook come with
# rml_sgd_poly_90k.py; only the unlabeled data is the dataset's.
train_cfg = dict(unlabeled_dataloader={{_base_.unlabeled_dataloader}})
