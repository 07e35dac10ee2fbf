"""U2PL's contrastive loss with unreliable pseudo-labels (Sec. 3.3)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...utils.arg_checks import check_int, check_number
from ..utils.contrastive_functional import (anchor_mask, class_positive_keys,
                                            class_rank, flatten_pixels,
                                            gather_pixels, info_nce,
                                            labeled_negative_mask,
                                            resize_pixel_maps,
                                            sample_anchor_pixels,
                                            unlabeled_negative_mask)


@MODELS.register_module()
class U2PLContrastiveLoss(nn.Module):
    """Pixel InfoNCE with class-wise memory banks of negatives (U2PL Eq. 4).

    One step, for every class ``c`` at once:

    1. anchors ``A_c``: pixels labeled ``c`` (ground truth on labeled rows,
       reliable pseudo-label on unlabeled rows) with teacher ``p(c) >
       delta_p`` (Eq. 10-11);
    2. positive ``z_c^+``: the mean teacher representation over ``A_c``
       (Eq. 12);
    3. negatives: on labeled rows, pixels of another class where ``c`` is
       ranked in ``[0, r_l)`` (Eq. 14); on unlabeled rows, unreliable pixels
       where ``c`` is ranked in ``[r_l, r_h)`` whatever their pseudo-label
       (Eq. 15). Their teacher representations are pushed into queue
       ``Q_c`` (Eq. 16) *before* sampling, as in the authors' code, so this
       batch's negatives are already usable (and a class has negatives on
       its first step);
    4. ``M`` anchors per class drawn uniformly from ``A_c`` out of the
       STUDENT's representations, ``N`` negatives per anchor drawn from
       ``Q_c``, and the InfoNCE of Eq. 4 averaged over anchors and over the
       classes that have at least one anchor and a non-empty queue.

    Only the student's anchors get gradients: teacher representations,
    positives and queue keys are detached. The queue stores L2-normalised
    keys; Eq. 4 only uses cosine similarities, so this is exact and saves
    normalising the sampled (C, M, N, D) negatives each step. All loss math
    runs in float32 with autocast disabled. Every class is processed in one
    batched computation (no Python loop and no per-class host sync); the
    only sync is in :meth:`ClassMemoryBank.push`. The sampled negatives take
    ``C * M * N * D * 4`` bytes (275 MB for PASCAL VOC with the paper's
    M=50, N=256, D=256), whatever the number of classes present.

    Inputs of a different spatial size than the representations are
    resized to it: labels and masks with nearest interpolation (so labels
    are never blended), probabilities bilinearly (``align_corners=False``).

    The rank bounds are clamped to the number of classes C:
    ``r_h = min(high_rank, C)`` and ``r_l = min(low_rank, r_h - 1)``, so at
    least one rank is left for unlabeled negatives. With 2 classes this
    gives ``r_l = 1, r_h = 2``: labeled negatives are pixels of the other
    class predicted as ``c``, unlabeled negatives are unreliable pixels not
    predicted as ``c``.

    Args:
        num_classes: Number of classes C (>= 2).
        feat_channels: Representation dimension D.
        num_anchors: Anchors per class M (50 in the paper).
        num_negatives: Negatives per anchor N (256 in the paper).
        temperature: InfoNCE temperature tau (0.5).
        anchor_prob_threshold: ``delta_p`` (0.3).
        low_rank: ``r_l`` (3).
        high_rank: ``r_h`` (20).
        queue_size: Capacity of each class queue (30000).
        max_push_per_class: Optional cap on keys enqueued per class per step
            (see :class:`ClassMemoryBank`).
        memory_bank: Optional config dict of the bank; missing keys are
            filled from the arguments above, ``type`` defaults to
            'ClassMemoryBank'.
        loss_weight: ``lambda_c`` (0.1). Not divided by the world size: every
            rank computes the same kind of per-class mean and DDP already
            averages gradients over ranks.
        ignore_index: Label of pixels without a (reliable) label.
        loss_name: Key of the loss in the losses dict.
    """

    def __init__(self,
                 num_classes: int,
                 feat_channels: int = 256,
                 num_anchors: int = 50,
                 num_negatives: int = 256,
                 temperature: float = 0.5,
                 anchor_prob_threshold: float = 0.3,
                 low_rank: int = 3,
                 high_rank: int = 20,
                 queue_size: int = 30000,
                 max_push_per_class: Optional[int] = None,
                 memory_bank: Optional[dict] = None,
                 loss_weight: float = 0.1,
                 ignore_index: int = 255,
                 loss_name: str = 'loss_contrast'):
        super().__init__()
        check_int('num_classes', num_classes, minimum=2)
        for name, value in (('feat_channels', feat_channels),
                            ('num_anchors', num_anchors),
                            ('num_negatives', num_negatives),
                            ('low_rank', low_rank)):
            check_int(name, value, minimum=1)
        check_int('high_rank', high_rank, minimum=low_rank + 1)
        check_number('temperature', temperature, low=0, low_open=True)
        check_number('anchor_prob_threshold', anchor_prob_threshold, 0, 1,
                     high_open=True)
        check_number('loss_weight', loss_weight, low=0)
        if 0 <= check_int('ignore_index', ignore_index) < num_classes:
            raise ValueError(f'ignore_index={ignore_index} collides with a '
                             f'class index in [0, {num_classes})')
        self.num_classes = num_classes
        self.feat_channels = feat_channels
        self.num_anchors = num_anchors
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.anchor_prob_threshold = anchor_prob_threshold
        self.high_rank = min(high_rank, num_classes)
        self.low_rank = min(low_rank, self.high_rank - 1)
        self.loss_weight = loss_weight
        self.ignore_index = ignore_index
        self._loss_name = loss_name
        self.memory_bank = self._build_memory_bank(memory_bank, queue_size,
                                                   max_push_per_class)

    @property
    def loss_name(self) -> str:
        """Key of this loss in the losses dict (mmseg convention)."""
        return self._loss_name

    def forward(self,
                student_reps: Tensor,
                teacher_reps: Tensor,
                labels: Tensor,
                teacher_probs: Tensor,
                unreliable: Tensor,
                is_labeled: Tensor,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Compute ``loss_weight * L_c`` and update the queues.

        Args:
            student_reps: Student representations (B, D, h, w).
            teacher_reps: Teacher representations (B, D, h, w).
            labels: int64 (B, H, W); ground truth on labeled rows,
                pseudo-labels (``ignore_index`` where not reliable or
                padded) on unlabeled rows.
            teacher_probs: Teacher probabilities (B, C, H', W').
            unreliable: bool (B, H'', W''), entropy >= gamma_t on valid
                pixels; only read on unlabeled rows.
            is_labeled: bool (B,), which rows carry ground truth.
            generator: Optional RNG (on the representations' device) for
                anchor, negative and push sampling.

        Returns:
            0-dim float32 loss; 0 (not NaN) when no class is valid.
        """
        self._check_inputs(student_reps, teacher_reps, labels, teacher_probs,
                           unreliable, is_labeled)
        size = student_reps.shape[2:]
        with torch.no_grad():
            labels, probs, unreliable = resize_pixel_maps(
                size, labels, teacher_probs, unreliable)
            anchors_mask, negatives_mask = self._class_masks(
                labels, probs, unreliable, is_labeled)
            teacher_pixels = flatten_pixels(teacher_reps.detach().float())
            positives, has_anchor = class_positive_keys(
                teacher_pixels, anchors_mask)
            self.memory_bank.push(
                F.normalize(teacher_pixels, dim=1), negatives_mask, generator)
            negatives, has_negatives = self.memory_bank.sample_negatives(
                self.num_anchors, self.num_negatives, generator)
            anchor_index = sample_anchor_pixels(anchors_mask,
                                                self.num_anchors, generator)
        anchors = gather_pixels(student_reps, anchor_index)
        loss = info_nce(anchors, positives, negatives, self.temperature,
                        has_anchor & has_negatives)
        return self.loss_weight * loss

    def _class_masks(self, labels: Tensor, probs: Tensor, unreliable: Tensor,
                     is_labeled: Tensor) -> Tuple[Tensor, Tensor]:
        """Anchor (Eq. 10-11) and negative (Eq. 13-15) masks, (C, N_pix)."""
        ranks = class_rank(probs)
        anchors_mask = anchor_mask(labels, probs, self.num_classes,
                                   self.anchor_prob_threshold,
                                   self.ignore_index)
        labeled_negatives = labeled_negative_mask(labels, ranks,
                                                  self.low_rank,
                                                  self.ignore_index)
        unlabeled_negatives = unlabeled_negative_mask(unreliable, ranks,
                                                      self.low_rank,
                                                      self.high_rank)
        labeled_pixels = is_labeled.view(-1, 1, 1).expand_as(labels)
        negatives_mask = torch.where(
            labeled_pixels.reshape(1, -1), labeled_negatives,
            unlabeled_negatives)
        return anchors_mask, negatives_mask

    def _build_memory_bank(self, memory_bank: Optional[dict],
                           queue_size: int,
                           max_push_per_class: Optional[int]) -> nn.Module:
        cfg = dict(type='ClassMemoryBank')
        cfg.update(memory_bank or {})
        cfg.setdefault('num_classes', self.num_classes)
        cfg.setdefault('feat_channels', self.feat_channels)
        cfg.setdefault('queue_size', queue_size)
        cfg.setdefault('max_push_per_class', max_push_per_class)
        if cfg['num_classes'] != self.num_classes \
                or cfg['feat_channels'] != self.feat_channels:
            raise ValueError(
                f'memory_bank num_classes={cfg["num_classes"]} and '
                f'feat_channels={cfg["feat_channels"]} must match the loss '
                f'({self.num_classes}, {self.feat_channels})')
        return MODELS.build(cfg)

    def _check_inputs(self, student_reps: Tensor, teacher_reps: Tensor,
                      labels: Tensor, teacher_probs: Tensor,
                      unreliable: Tensor, is_labeled: Tensor) -> None:
        if student_reps.dim() != 4 \
                or student_reps.shape[1] != self.feat_channels:
            raise ValueError(
                f'student_reps must have shape (B, {self.feat_channels}, h, '
                f'w), got {tuple(student_reps.shape)}')
        if teacher_reps.shape != student_reps.shape:
            raise ValueError(
                f'teacher_reps {tuple(teacher_reps.shape)} must match '
                f'student_reps {tuple(student_reps.shape)}')
        batch_size = student_reps.shape[0]
        if labels.dim() != 3 or labels.shape[0] != batch_size:
            raise ValueError(f'labels must have shape ({batch_size}, H, W), '
                             f'got {tuple(labels.shape)}')
        if labels.dtype != torch.long:
            raise ValueError(
                f'labels must be an int64 tensor, got dtype {labels.dtype}')
        if teacher_probs.dim() != 4 or teacher_probs.shape[:2] != (
                batch_size, self.num_classes):
            raise ValueError(
                f'teacher_probs must have shape ({batch_size}, '
                f'{self.num_classes}, H, W), got '
                f'{tuple(teacher_probs.shape)}')
        if unreliable.dim() != 3 or unreliable.shape[0] != batch_size \
                or unreliable.dtype != torch.bool:
            raise ValueError(
                f'unreliable must be a bool tensor of shape ({batch_size}, H,'
                f' W), got {unreliable.dtype} {tuple(unreliable.shape)}')
        if is_labeled.shape != (batch_size,) \
                or is_labeled.dtype != torch.bool:
            raise ValueError(
                f'is_labeled must be a bool tensor of shape ({batch_size},), '
                f'got {is_labeled.dtype} {tuple(is_labeled.shape)}')

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, '
                f'num_anchors={self.num_anchors}, '
                f'num_negatives={self.num_negatives}, '
                f'temperature={self.temperature}, '
                f'anchor_prob_threshold={self.anchor_prob_threshold}, '
                f'low_rank={self.low_rank}, high_rank={self.high_rank}, '
                f'loss_weight={self.loss_weight}')
