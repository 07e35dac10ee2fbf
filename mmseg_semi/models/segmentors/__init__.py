from .dual_student_segmentor import DualStudentSegmentor
from .mean_teacher_segmentor import MeanTeacherSegmentor
from .semi_base_segmentor import SemiBaseSegmentor

__all__ = ['DualStudentSegmentor', 'MeanTeacherSegmentor', 'SemiBaseSegmentor']
