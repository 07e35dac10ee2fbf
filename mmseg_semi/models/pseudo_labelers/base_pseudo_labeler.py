"""Common interface and input checks for pseudo-labelers."""
from abc import ABCMeta, abstractmethod
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ...utils.arg_checks import check_int
from ..utils.pseudo_label_functional import class_argmax
from .pseudo_labels import PseudoLabels


class BasePseudoLabeler(nn.Module, metaclass=ABCMeta):
    """Turns teacher probabilities into :class:`PseudoLabels`.

    ``forward`` validates the inputs, detaches the probabilities and casts
    them to float32 (pseudo-labels are targets, never differentiated, and
    the selection statistics must not be computed in half precision), then
    delegates to :meth:`label`.

    Args:
        ignore_index: Label written where no pseudo-label is given. It must
            not be a valid class index of the probabilities.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = check_int('ignore_index', ignore_index)

    def forward(self,
                probs: Tensor,
                valid_mask: Optional[Tensor] = None,
                progress: Tuple[int, int] = (0, 1)) -> PseudoLabels:
        """Pseudo-label one batch.

        Args:
            probs: Teacher softmax (B, C, H, W), already rectified if a
                rectifier is used.
            valid_mask: bool (B, H, W), True on real image content. None
                means every pixel is valid.
            progress: ``(iteration, max_iters)`` of the training schedule.

        Returns:
            PseudoLabels for the batch.
        """
        self._check_probs(probs)
        if valid_mask is None:
            valid_mask = torch.ones(
                probs.shape[:1] + probs.shape[2:],
                dtype=torch.bool,
                device=probs.device)
        else:
            self._check_valid_mask(valid_mask, probs)
        iteration, max_iters = self._check_progress(progress)
        with torch.no_grad():
            return self.label(probs.detach().float(), valid_mask, iteration,
                              max_iters)

    @abstractmethod
    def label(self, probs: Tensor, valid_mask: Tensor, iteration: int,
              max_iters: int) -> PseudoLabels:
        """Select reliable pixels; inputs are already checked.

        Args:
            probs: float32 (B, C, H, W) detached teacher probabilities.
            valid_mask: bool (B, H, W).
            iteration: Current iteration (>= 0).
            max_iters: Total iterations (> 0).
        """

    def argmax_labels(self, probs: Tensor, reliable: Tensor) -> Tensor:
        """Arg-max class per pixel, ``ignore_index`` where not reliable."""
        labels = class_argmax(probs)
        return labels.masked_fill(~reliable, self.ignore_index)

    def _check_probs(self, probs: Tensor) -> None:
        if not isinstance(probs, Tensor):
            raise ValueError(
                f'probs must be a torch.Tensor, got {type(probs).__name__}')
        if probs.dim() != 4:
            raise ValueError('probs must be a 4-D tensor (B, C, H, W), got '
                             f'shape {tuple(probs.shape)}')
        if not torch.is_floating_point(probs):
            raise ValueError(
                f'probs must be floating point, got dtype {probs.dtype}')
        if probs.numel() == 0:
            raise ValueError(
                f'probs must not be empty, got shape {tuple(probs.shape)}')
        num_classes = probs.shape[1]
        if 0 <= self.ignore_index < num_classes:
            raise ValueError(
                f'ignore_index={self.ignore_index} collides with a class '
                f'index of probs with {num_classes} classes')

    @staticmethod
    def _check_valid_mask(valid_mask: Tensor, probs: Tensor) -> None:
        expected = probs.shape[:1] + probs.shape[2:]
        if not isinstance(valid_mask, Tensor):
            raise ValueError('valid_mask must be a torch.Tensor or None, got '
                             f'{type(valid_mask).__name__}')
        if valid_mask.shape != expected:
            raise ValueError(
                f'valid_mask must have shape (B, H, W) = {tuple(expected)} '
                f'to match probs {tuple(probs.shape)}, got '
                f'{tuple(valid_mask.shape)}')
        if valid_mask.dtype != torch.bool:
            raise ValueError(
                f'valid_mask must be a bool tensor, got dtype '
                f'{valid_mask.dtype}')
        if valid_mask.device != probs.device:
            raise ValueError(
                f'valid_mask is on {valid_mask.device} but probs is on '
                f'{probs.device}')

    @staticmethod
    def _check_progress(progress: Tuple[int, int]) -> Tuple[int, int]:
        if not isinstance(progress, (tuple, list)) or len(progress) != 2:
            raise ValueError(
                f'progress must be (iteration, max_iters), got {progress!r}')
        iteration, max_iters = progress
        return (check_int('progress iteration', iteration, minimum=0),
                check_int('progress max_iters', max_iters, minimum=1))
