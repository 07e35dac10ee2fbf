"""U2PL's contrastive term for one (teacher, student) pair (not registered).

Shared by :class:`MeanTeacherSegmentor` (U2PL) and
:class:`DualStudentSegmentor` (RML with a U2PL head per student), so both
build the representation heads and compute the loss of U2PL Sec. 3.3
(Eq. 4, 9-16) with one implementation.
"""
import copy
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..losses.u2pl_contrastive_loss import resize_pixel_maps
from ..utils import cutmix_batch
from ..utils.cutmix import boxes_to_mask, paste_from
from .semi_base_segmentor import (classifier_input_module, forward_logits,
                                  freeze, stack_gt_labels)

#: ``(box_mask, perm)`` of one CutMix step: bool (B, H, W) pasted pixels,
#: and the (B,) index of the image each sample takes its box from.
CutMixMask = Tuple[Tensor, Tensor]


def check_contrastive_pair(rep_head: Optional[dict],
                           contrastive_loss: Optional[dict]) -> bool:
    """True when both U2PL configs are given, False when neither is.

    One without the other is refused: the loss needs representations and a
    head alone would never be trained.
    """
    if (rep_head is None) != (contrastive_loss is None):
        raise ValueError(
            'rep_head and contrastive_loss go together (U2PL): got '
            f'rep_head={rep_head!r}, contrastive_loss={contrastive_loss!r}')
    return rep_head is not None


def build_rep_heads(rep_head: dict,
                    student: nn.Module) -> Tuple[nn.Module, nn.Module]:
    """A student representation head and its frozen teacher copy.

    Checks first that ``student``'s decode head exposes the classifier
    input the head runs on, so a bad pairing fails at build time rather
    than at the first unsupervised step.

    Returns:
        ``(teacher_rep_head, student_rep_head)``, an EMA pair.
    """
    classifier_input_module(student.decode_head)
    student_rep_head = MODELS.build(rep_head)
    return freeze(copy.deepcopy(student_rep_head)), student_rep_head


def mix_with_box_mask(cutmix: Optional[dict], strong: Tensor,
                      *pixel_maps: Tensor
                      ) -> Tuple[Tensor, Tuple[Tensor, ...],
                                 Optional[CutMixMask]]:
    """CutMix the strong view and its per-pixel maps with one set of boxes.

    Returns the mixed image, the mixed maps, and the ``(box_mask, perm)``
    the contrastive term needs to move maps at another resolution (the
    teacher's representations) the same way; None for both the mixing and
    the mask when ``cutmix`` is None.
    """
    if cutmix is None:
        return strong, pixel_maps, None
    strong, maps, boxes, perm = cutmix_batch(strong, *pixel_maps, **cutmix)
    return strong, maps, (boxes_to_mask(boxes, *strong.shape[2:]), perm)


def resize_mask(mask: Tensor, size) -> Tensor:
    """Nearest resize of a (B, H, W) bool mask."""
    if tuple(mask.shape[1:]) == tuple(size):
        return mask
    return F.interpolate(
        mask[:, None].float(), size=tuple(size), mode='nearest')[:, 0] > 0.5


def u2pl_contrastive_term(contrastive_loss: nn.Module,
                          student_rep_head: nn.Module,
                          teacher_rep_head: nn.Module, teacher: nn.Module,
                          labeled_inputs: Tensor,
                          labeled_samples: SampleList,
                          student_feat_l: Tensor, student_feat_u: Tensor,
                          teacher_feat_u: Tensor, labels_u: Tensor,
                          unreliable_u: Tensor, probs_u: Tensor,
                          cutmix_mask: Optional[CutMixMask]) -> Tensor:
    """U2PL's pixel contrastive loss of one student (Sec. 3.3).

    Anchors are the student's representations of the labeled batch and of
    the (mixed) strong view; positives and the negatives pushed into the
    loss's memory bank come from the teacher's representations of the
    labeled batch and of the weak view. The teacher saw the weak view
    unmixed, so its representations are moved with the CutMix boxes of the
    strong view, at representation resolution.

    Args:
        contrastive_loss: The student's ``U2PLContrastiveLoss`` (it holds
            the memory bank, which this call updates).
        student_rep_head: Representation head of the student (trained).
        teacher_rep_head: Its EMA copy, run without gradients.
        teacher: The teacher segmentor whose pseudo-labels are used.
        labeled_inputs: (B_l, 3, H, W) labeled images.
        labeled_samples: Their data samples (ground truth).
        student_feat_l: Student decoder feature on the labeled batch.
        student_feat_u: Student decoder feature on the mixed strong view.
        teacher_feat_u: Teacher decoder feature on the (unmixed) weak view.
        labels_u: int64 (B_u, H, W) mixed pseudo-labels.
        unreliable_u: bool (B_u, H, W) mixed unreliable-pixel mask (the
            Eq. 15 negatives' candidates).
        probs_u: (B_u, C, H, W) mixed teacher probabilities.
        cutmix_mask: ``(box_mask, perm)`` of the CutMix step, or None.

    Returns:
        The 0-dim loss (already scaled by the loss's ``loss_weight``).
    """
    with torch.no_grad():
        logits_l, teacher_feat_l = forward_logits(
            teacher, labeled_inputs, with_features=True)
        probs_l = logits_l.float().softmax(dim=1)
        teacher_rep_l = teacher_rep_head(teacher_feat_l)
        teacher_rep_u = teacher_rep_head(teacher_feat_u)
        if cutmix_mask is not None:
            box_mask, perm = cutmix_mask
            teacher_rep_u = paste_from(
                teacher_rep_u, perm,
                resize_mask(box_mask, teacher_rep_u.shape[2:]))
    if student_feat_l.shape[2:] != student_feat_u.shape[2:]:
        raise ValueError(
            'U2PL needs labeled and unlabeled crops of one size: decoder '
            f'features are {tuple(student_feat_l.shape[2:])} (labeled) '
            f'and {tuple(student_feat_u.shape[2:])} (unlabeled)')
    student_rep = student_rep_head(
        torch.cat([student_feat_l, student_feat_u]))
    teacher_rep = torch.cat([teacher_rep_l, teacher_rep_u])
    gt_labels = stack_gt_labels(labeled_samples)
    num_l, num_u = gt_labels.shape[0], labels_u.shape[0]
    # Each half is brought to the representation size before it is joined
    # (the loss would resize the joined maps to the same values), so the
    # full-resolution probabilities are never copied into one tensor.
    size = student_rep.shape[2:]
    labels_l, probs_l, unreliable_l = resize_pixel_maps(
        size, gt_labels, probs_l,
        # Ground truth is never unreliable.
        torch.zeros_like(gt_labels, dtype=torch.bool))
    labels_u, probs_u, unreliable_u = resize_pixel_maps(
        size, labels_u, probs_u, unreliable_u)
    return contrastive_loss(
        student_reps=student_rep,
        teacher_reps=teacher_rep,
        labels=torch.cat([labels_l, labels_u]),
        teacher_probs=torch.cat([probs_l, probs_u]),
        unreliable=torch.cat([unreliable_l, unreliable_u]),
        is_labeled=torch.arange(num_l + num_u, device=labels_u.device) <
        num_l)
