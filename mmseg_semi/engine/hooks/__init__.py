from .class_collapse_guard_hook import ClassCollapseGuardHook
from .ema_teacher_hook import EMATeacherHook

__all__ = ['ClassCollapseGuardHook', 'EMATeacherHook']
