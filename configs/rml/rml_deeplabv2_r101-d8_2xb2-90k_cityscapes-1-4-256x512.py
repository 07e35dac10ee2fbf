# RML in the paper's setting, Cityscapes 1/4 (744 labeled + 2,231 unlabeled
# images), stage 1. Split files: make_semi_splits.py --fraction 1/4.
_base_ = ['./rml_deeplabv2_r101-d8_2xb2-90k_cityscapes-1-30-256x512.py']
split_dir = 'splits/cityscapes/1-4_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_dir + '/labeled.txt'))
train_cfg = dict(
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_dir + '/unlabeled.txt')))
