"""Non-finite loss detection shared by this package's optimiser wrappers."""
import logging
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.logging import print_log
from torch import nn

from ...utils.arg_checks import check_choice

#: What a guarded wrapper does with a step whose loss is not finite.
NONFINITE_LOSS_ACTIONS = ('raise', 'skip')
#: Message hub info key: iteration whose optimiser step was skipped. The
#: EMA teacher hook reads it so that a skipped step leaves teachers alone.
SKIPPED_ITER_INFO_KEY = 'nonfinite_loss_skipped_iter'
#: Message hub scalar: how many steps were skipped so far (logged).
SKIPPED_STEPS_SCALAR_KEY = 'train/nonfinite_loss_skips'
#: Key of the skip counter in the wrapper's state dict (checkpoints).
SKIPPED_STEPS_STATE_KEY = 'nonfinite_loss_skips'


def nonfinite_loss_terms(losses: Dict) -> List[Tuple[str, str]]:
    """``(key, value)`` of every summed loss term that is not finite.

    mmengine's ``parse_losses`` sums the keys containing 'loss'; a term is a
    tensor or a list of tensors. Values are formatted for the message (this
    runs only once a step is known to be bad, so the syncs cost nothing).
    """
    bad = []
    for key, value in losses.items():
        if 'loss' not in key:
            continue
        tensors = value if isinstance(value, (list, tuple)) else [value]
        tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
        if any(not torch.isfinite(t.detach()).all() for t in tensors):
            shown = ', '.join(
                str(t.detach().float().mean().item()) for t in tensors)
            bad.append((key, shown))
    return bad


def nonfinite_buffers(model: nn.Module) -> List[str]:
    """Names of floating-point buffers holding NaN or inf."""
    return [
        name for name, buffer in model.named_buffers()
        if buffer.is_floating_point() and not torch.isfinite(buffer).all()
    ]


class FiniteLossGuardMixin:
    """Checks the summed loss once per step; raises or skips the step.

    Meant to be mixed into an mmengine ``OptimWrapper`` subclass before it
    (see :class:`FiniteLossOptimWrapper`). The subclass calls
    :meth:`init_finite_loss_guard` in its ``__init__``.

    How it works: ``optim_context(model)`` (entered by mmengine's
    ``train_step`` around the forward pass) puts a forward hook on the model
    that keeps a reference to the loss dict of that forward; no tensor is
    read. ``update_params(loss)`` checks the summed loss once (one host
    sync per step, and one all-reduce of a flag under DDP so every rank
    takes the same branch). Only when that check fails are the individual
    terms read, to name the culprits (e.g. ``unsup_loss_ce``).
    """

    def init_finite_loss_guard(self, nonfinite_loss: Optional[str]) -> None:
        self.nonfinite_loss = check_choice('nonfinite_loss', nonfinite_loss,
                                           NONFINITE_LOSS_ACTIONS + (None, ))
        self.skipped_steps = 0
        self._captured_losses: Optional[dict] = None
        self._guarded_model: Optional[nn.Module] = None

    # ---------------------------------------------------------- capturing
    @contextmanager
    def optim_context(self, model: nn.Module):
        if self.nonfinite_loss is None:
            with super().optim_context(model):
                yield
            return
        self._guarded_model = model
        handle = model.register_forward_hook(self._capture_losses)
        try:
            with super().optim_context(model):
                yield
        finally:
            handle.remove()

    def _capture_losses(self, module, args, output) -> None:
        if isinstance(output, dict):
            self._captured_losses = output

    # ------------------------------------------------------------ update
    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        if self.nonfinite_loss is None:
            super().update_params(loss, step_kwargs, zero_kwargs)
            return
        losses, self._captured_losses = self._captured_losses, None
        if loss_is_finite_on_all_ranks(loss):
            super().update_params(loss, step_kwargs, zero_kwargs)
        else:
            self._on_nonfinite_loss(loss, losses)
        self.message_hub.update_scalar(SKIPPED_STEPS_SCALAR_KEY,
                                       self.skipped_steps)

    def _on_nonfinite_loss(self, loss: torch.Tensor,
                           losses: Optional[dict]) -> None:
        iteration = self.message_hub.get_info('iter')
        if losses is None:
            terms = 'the loss terms were not seen (forward outside ' \
                'optim_context)'
        else:
            bad = nonfinite_loss_terms(losses)
            terms = ', '.join(f'{key}={value}' for key, value in bad) or \
                'every term is finite on this rank (another rank has the ' \
                'bad term)'
        message = (f'non-finite loss at iteration {iteration}: '
                   f'loss={loss.detach().float().item()}; non-finite '
                   f'term(s): {terms}')
        if self.nonfinite_loss == 'raise':
            raise FloatingPointError(
                message + "; set optim_wrapper.nonfinite_loss='skip' to "
                'skip such steps instead')
        # Skip: no backward (so no DDP reduction is left pending on any
        # rank), discard gradients accumulated in this window, keep the
        # iteration count in step with the runner's.
        self.zero_grad()
        self._inner_count += 1
        if self._guarded_model is not None:
            broken = nonfinite_buffers(self._guarded_model)
            if broken:
                # BN statistics were updated by the bad forward already;
                # skipping the step cannot undo that.
                raise FloatingPointError(
                    message + f'; cannot skip: buffer(s) {broken[:3]} became '
                    'non-finite during the forward pass')
        self.skipped_steps += 1
        self.message_hub.update_info(SKIPPED_ITER_INFO_KEY, iteration)
        print_log(
            f'{message}; optimiser step and EMA update skipped '
            f'({self.skipped_steps} skipped so far)',
            logger='current',
            level=logging.WARNING)

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state = super().state_dict()
        state[SKIPPED_STEPS_STATE_KEY] = self.skipped_steps
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        self.skipped_steps = int(
            state_dict.pop(SKIPPED_STEPS_STATE_KEY, self.skipped_steps))
        super().load_state_dict(state_dict)


def loss_is_finite_on_all_ranks(loss: torch.Tensor) -> bool:
    """One check of the summed loss; under DDP, finite on every rank."""
    bad = (~torch.isfinite(loss.detach())).any().float()
    if get_world_size() > 1:
        all_reduce(bad, op='sum')
    return not bool(bad.item())
