from typing import Optional

from mmengine.optim import OptimWrapper

from mmseg.registry import OPTIM_WRAPPERS
from .finite_loss_guard import FiniteLossGuardMixin


@OPTIM_WRAPPERS.register_module()
class FiniteLossOptimWrapper(FiniteLossGuardMixin, OptimWrapper):
    """``OptimWrapper`` that refuses or skips steps with a non-finite loss.

    Design: the check sits where the step is taken, so a skipped step
    provably changes nothing. The summed loss is checked once per step
    (one host sync, plus one all-reduce of a flag under DDP); the terms are
    only read when that check fails, to name the culprits (e.g.
    ``unsup_loss_ce=nan``).

    * ``nonfinite_loss='raise'`` raises ``FloatingPointError`` naming the
      iteration and every non-finite term.
    * ``nonfinite_loss='skip'`` runs no backward and no optimiser step,
      discards the gradients accumulated in the current window, logs a
      warning with the same message and counts the skip
      (``train/nonfinite_loss_skips``, kept in checkpoints with the
      optimiser state). The iteration still counts (LR schedule, data).
      :class:`EMATeacherHook` leaves the teachers unchanged on a skipped
      iteration (it reads ``SKIPPED_ITER_INFO_KEY`` from the message hub).
      BN running statistics updated by the skipped (finite) forward are
      kept; if the bad forward made a buffer non-finite, the skip cannot
      undo it and the wrapper raises instead, naming the buffer.
      Memory banks and prototypes are fed from the teachers' outputs,
      which a student's bad loss does not reach.
    * ``None`` behaves exactly like ``OptimWrapper``.

    Example::

        optim_wrapper = dict(type='FiniteLossOptimWrapper',
                             nonfinite_loss='skip', optimizer=...)

    Args:
        nonfinite_loss: 'raise', 'skip' or None.
        **kwargs: :class:`mmengine.optim.OptimWrapper` arguments.
    """

    def __init__(self, nonfinite_loss: Optional[str] = 'raise',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.init_finite_loss_guard(nonfinite_loss)
