from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from mmseg.registry import HOOKS
from ...utils.arg_checks import check_choice, check_int, check_number
from ..optimizers.finite_loss_guard import SKIPPED_ITER_INFO_KEY

EMA_BUFFER_MODES = ('average', 'copy')


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """Teacher decay for the ``step``-th EMA update (0-based).

    With ``warmup`` (U2PL): ``min(1 - 1 / (step + 1), decay)``, so the first
    update copies the student and the teacher averages over all updates so
    far until that average is slower than ``decay``.
    """
    check_int('step', step, minimum=0)
    if not warmup:
        return decay
    return min(1.0 - 1.0 / (step + 1), decay)


@torch.no_grad()
def ema_update_(teacher: nn.Module, student: nn.Module, decay: float,
                buffers: str = 'average') -> None:
    """teacher = decay * teacher + (1 - decay) * student, in place.

    Parameters are averaged. Floating-point buffers (BN running statistics)
    are averaged or copied (``buffers='copy'``); integer buffers (BN's
    ``num_batches_tracked``) are always copied.
    """
    check_choice('buffers', buffers, EMA_BUFFER_MODES)
    t_params = list(teacher.parameters())
    s_params = list(student.parameters())
    if len(t_params) != len(s_params):
        raise ValueError('teacher and student have different parameters '
                         f'({len(t_params)} vs {len(s_params)})')
    if t_params:
        torch._foreach_lerp_(t_params, [p.detach() for p in s_params],
                             1.0 - decay)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers()):
        if t_buf.is_floating_point() and buffers == 'average':
            t_buf.lerp_(s_buf, 1.0 - decay)
        else:
            t_buf.copy_(s_buf)


@torch.no_grad()
def average_buffers_across_ranks_(module: nn.Module) -> None:
    """Make floating-point buffers equal on all ranks with one all-reduce.

    Without SyncBN each rank's student has its own BN statistics, so
    teachers built from them would drift apart across ranks.
    """
    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs or get_world_size() == 1:
        return
    flat = torch.cat([b.reshape(-1).float() for b in bufs])
    all_reduce(flat, op='mean')
    offset = 0
    for buf in bufs:
        n = buf.numel()
        buf.copy_(flat[offset:offset + n].view_as(buf))
        offset += n


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Keeps each teacher an exponential moving average of its student.

    After every optimiser step, for every (teacher, student) pair the model
    reports through ``teacher_student_pairs()`` (one for mean teacher / U2PL,
    two for RML): ``teacher = decay * teacher + (1 - decay) * student``.
    This is the mean teacher of Tarvainen & Valpola (NeurIPS 2017), which
    U2PL and RML use for their teachers.

    During the model's supervised-only warm-up (``model.unsup_start_iter``)
    the teacher is a copy of the student (decay 0); after it, the ``k``-th
    update uses :func:`ema_decay_at` (``k`` counts from the end of the
    warm-up). ``k`` is derived from the runner's iteration, which mmengine
    saves in checkpoints, so the schedule resumes exactly.

    Args:
        decay: Final EMA decay (U2PL: 0.99).
        warmup: U2PL's ramp ``min(1 - 1/(k+1), decay)``.
        buffers: 'average' or 'copy' for floating-point buffers.
        sync_buffers: Average teacher buffers across DDP ranks after each
            update so all ranks hold identical teachers.
        interval: Update every ``interval`` iterations.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 decay: float = 0.99,
                 warmup: bool = True,
                 buffers: str = 'average',
                 sync_buffers: bool = True,
                 interval: int = 1) -> None:
        self.decay = check_number('decay', decay, 0, 1)
        self.warmup = warmup
        self.buffers = check_choice('buffers', buffers, EMA_BUFFER_MODES)
        self.sync_buffers = sync_buffers
        self.interval = check_int('interval', interval, minimum=1)

    @staticmethod
    def _semi_model(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        if not hasattr(model, 'teacher_student_pairs'):
            raise TypeError(
                f'EMATeacherHook needs a semi-supervised model with '
                f'teacher_student_pairs(); got {type(model).__name__}')
        return model

    def before_train(self, runner) -> None:
        self._semi_model(runner)  # fail early on a wrong model

    def current_decay(self, iteration: int, start_iter: int) -> float:
        """Decay used after optimiser step ``iteration`` (0-based)."""
        if iteration < start_iter:
            return 0.0
        return ema_decay_at(iteration - start_iter, self.decay, self.warmup)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if (runner.iter + 1) % self.interval != 0:
            return
        if runner.message_hub.get_info(SKIPPED_ITER_INFO_KEY) == runner.iter:
            return  # FiniteLossOptimWrapper skipped this step: no update
        model = self._semi_model(runner)
        decay = self.current_decay(runner.iter,
                                   getattr(model, 'unsup_start_iter', 0))
        for teacher, student in model.teacher_student_pairs():
            ema_update_(teacher, student, decay, self.buffers)
            if self.sync_buffers:
                average_buffers_across_ranks_(teacher)
        runner.message_hub.update_scalar('train/ema_decay', decay)
