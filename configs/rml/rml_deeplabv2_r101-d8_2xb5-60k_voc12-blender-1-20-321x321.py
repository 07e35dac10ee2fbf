# RML in the paper's setting, PASCAL VOC 2012 1/20 of train_aug
# (530 labeled + 10,052 unlabeled images), stage 1. Split files:
# make_semi_splits.py --dataset voc-blender --fraction 1/20.
_base_ = ['./rml_deeplabv2_r101-d8_2xb5-60k_voc12-blender-1-100-321x321.py']
split_dir = 'splits/voc-blender/1-20_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
