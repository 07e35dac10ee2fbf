from .semi_iter_based_train_loop import SemiIterBasedTrainLoop
from .teacher_student_val_loop import TeacherStudentValLoop

__all__ = ['SemiIterBasedTrainLoop', 'TeacherStudentValLoop']
