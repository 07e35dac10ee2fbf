from .mean_teacher_segmentor import MeanTeacherSegmentor
from .semi_base_segmentor import SemiBaseSegmentor

__all__ = ['MeanTeacherSegmentor', 'SemiBaseSegmentor']
