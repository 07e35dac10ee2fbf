# U2PL on CamVid 1/8 with RML's prototype rectifier: the teacher's softmax
# is rectified by class prototypes in its decoder feature space (RML Eq. 6,
# 9-11) before the entropy labeler splits reliable from unreliable pixels.
# Everything else is ../u2pl/u2pl_..._camvid-1-8-256x320.py.
_base_ = [
    '../u2pl/u2pl_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py'
]
model = dict(
    rectifier=dict(
        type='PrototypeRectifier',
        # num_classes and feat_channels are read from the student.
        # As the RML CamVid configs: 1k iterations are too few for the
        # paper-scale 0.9999.
        momentum=0.99))
