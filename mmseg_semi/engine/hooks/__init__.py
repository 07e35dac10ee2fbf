from .class_collapse_guard_hook import ClassCollapseGuardHook
from .ema_teacher_hook import EMATeacherHook
from .labeled_class_weight_hook import LabeledClassWeightHook

__all__ = [
    'ClassCollapseGuardHook', 'EMATeacherHook', 'LabeledClassWeightHook'
]
