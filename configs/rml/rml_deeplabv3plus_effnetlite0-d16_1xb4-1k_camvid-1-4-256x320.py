# RML on CamVid 1/4 (92 labeled + 275 unlabeled images), stage 1.
_base_ = ['./rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py']
split_root = '{{ fileDirname }}/../../splits/camvid/1-4_seed0'
train_dataloader = dict(dataset=dict(ann_file=split_root + '/labeled.txt'))
train_cfg = dict(
    unlabeled_dataloader=dict(
        dataset=dict(ann_file=split_root + '/unlabeled.txt')))
