# RML (Zhang et al., 2021, arXiv 2106.00609) in the paper's setting, PASCAL
# VOC 2012 1/100 of the 10,582 train_aug images (106 labeled + 10,476
# unlabeled), stage 1: two DeepLabv2 ResNet-101 students with model noise
# (dropout 0.5, stochastic depth), input noise (RandAugment's photometric
# ops, then CutMix), EMA teachers with prototype rectification, mutual
# pseudo-label losses (Eq. 5). 321x321 crops.
# Schedule (Sec. 5.2): 60k iterations at batch 10, per stage. "Batch 10" is
# read as 10 labeled images per step, with as many unlabeled ones: 2 GPUs x
# (5 labeled + 5 unlabeled), hence the name's 2xb5. SGD lr 1e-4 poly
# (rml_sgd_poly_60k.py). Stage 2 is
# ./rml_..._voc12-blender-1-100-321x321_stage2.py.
# The split files come from make_semi_splits.py --dataset voc-blender
# --fraction 1/100 (see ../_base_/datasets/voc12_blender_321x321_rml_semi.py).
# The sibling split configs (1/50, 1/20, 1/8) change only the split.
_base_ = [
    '../_base_/models/rml_deeplabv2_r101.py',
    '../_base_/datasets/voc12_blender_321x321_rml_semi.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/rml_sgd_poly_60k.py'
]
crop_size = (321, 321)
num_classes = 21
data_preprocessor = dict(size=crop_size)
segmentor = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=num_classes))
model = dict(
    data_preprocessor=data_preprocessor,
    segmentor1=segmentor,
    segmentor2=segmentor)
split_dir = 'splits/voc-blender/1-100_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
# The semi loop, the teacher/student validation and the EMA hook come with
# rml_sgd_poly_60k.py; only the unlabeled data is the dataset's.
train_cfg = dict(unlabeled_dataloader={{_base_.unlabeled_dataloader}})
