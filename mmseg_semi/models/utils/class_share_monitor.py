"""Per-class pixel counts of labeled data and pseudo-labels, for the guard."""
from typing import Dict

import torch
from torch import Tensor, nn

from .class_balance_functional import class_pixel_counts
from .pseudo_label_functional import class_argmax


class ClassShareMonitor(nn.Module):
    """Counts, between two reads, what each class gets.

    * ``labeled``: ground-truth pixels of the labeled batches;
    * ``predicted``: valid unlabeled pixels whose pseudo-label class (the
      arg-max of the probabilities the labeler used) is the class;
    * ``reliable``: of those, the pixels the labeler kept;
    * ``flips``: (C, C) counts of (teacher's raw arg-max, pseudo-label
      arg-max) over valid pixels: what distribution alignment and a
      prototype rectifier changed.

    Updates are ``scatter_add`` on the model's device (no host sync); the
    :class:`ClassCollapseGuardHook` reads and resets them every few
    iterations. The counts are not saved in checkpoints (a window of
    statistics, not training state).

    Args:
        num_classes: C.
        ignore_index: Label value of unlabeled / ignored pixels.
    """

    KEYS = ('labeled', 'predicted', 'reliable', 'flips')

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        for key in self.KEYS[:3]:
            self.register_buffer(key, torch.zeros(num_classes),
                                 persistent=False)
        self.register_buffer('flips', torch.zeros(num_classes, num_classes),
                             persistent=False)

    @torch.no_grad()
    def update_labeled(self, counts: Tensor) -> None:
        self.labeled += counts

    @torch.no_grad()
    def update_pseudo(self, raw_probs: Tensor, pseudo) -> None:
        """Count one batch's pseudo-labels.

        Args:
            raw_probs: (B, C, H, W) the teacher's softmax before any
                alignment or rectification.
            pseudo: The :class:`PseudoLabels` drawn from it.
        """
        num_classes = self.num_classes
        classes = class_argmax(pseudo.probs)
        self.predicted += class_pixel_counts(classes, num_classes,
                                             pseudo.valid)
        self.reliable += class_pixel_counts(pseudo.labels, num_classes,
                                            ignore_index=self.ignore_index)
        pairs = class_argmax(raw_probs) * num_classes + classes
        self.flips += class_pixel_counts(
            pairs, num_classes * num_classes,
            pseudo.valid).view(num_classes, num_classes)

    @torch.no_grad()
    def read_and_reset(self) -> Dict[str, Tensor]:
        """The counts since the last read (copies); then zero them."""
        counts = {key: getattr(self, key).clone() for key in self.KEYS}
        for key in self.KEYS:
            getattr(self, key).zero_()
        return counts
