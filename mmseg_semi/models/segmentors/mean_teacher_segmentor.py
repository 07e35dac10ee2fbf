from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..pseudo_labelers import PseudoLabels
from ..utils import pseudo_label_cross_entropy
from ..utils.class_share_monitor import ClassShareMonitor
from .contrastive_step import (build_rep_heads, check_contrastive_pair,
                               mix_with_box_mask, u2pl_contrastive_term)
from .semi_base_segmentor import (SemiBaseSegmentor, check_class_weight_length,
                                  forward_logits, prefixed_losses,
                                  rectified_pseudo_labels,
                                  segmentor_loss_with_features,
                                  valid_pixel_mask)


@MODELS.register_module()
class MeanTeacherSegmentor(SemiBaseSegmentor):
    """Mean teacher around any mmseg segmentor; with a contrastive loss, U2PL.

    Per step: the student's own supervised loss on the labeled batch; the
    teacher (an EMA of the student kept by :class:`EMATeacherHook`) labels the
    weak view; an optional prototype rectifier (RML Eq. 6, 9) corrects the
    teacher's softmax; a pseudo-labeler turns it into labels, a reliability
    mask and a loss weight (U2PL Eq. 5-8 for the entropy labeler); the strong
    view and every per-pixel map are CutMixed together; the student is
    trained on the mixed strong view against the mixed pseudo-labels (U2PL
    Eq. 3 times the labeler's weight).

    With ``rep_head`` and ``contrastive_loss`` (U2PL Sec. 3.3), a
    representation head runs on the decoder feature that enters each
    network's classifier; the student's representations of labeled and
    unlabeled pixels are anchors, the teacher's give positives and the
    negatives kept in per-class memory banks (Eq. 4, 9-16). The teacher's
    representation head is the EMA of the student's; the loss (and its
    memory bank) lives in this wrapper, outside both, so it is neither
    averaged nor copied.

    Losses are logged as ``sup_<mmseg key>``, ``unsup_loss_ce`` and
    ``unsup_loss_contrast``, plus the labeler's statistics
    (``unsup_weight``, ``unsup_reliable_ratio``, ``unsup_alpha``,
    ``unsup_threshold``, ``unsup_rectified_ratio``), which are logged but not
    summed into the loss.

    Args:
        segmentor: Config of any mmseg ``EncoderDecoder``-style segmentor,
            used for the student; the teacher is a copy.
        pseudo_labeler: Config of a pseudo-labeler (entropy by default).
        cutmix: ``dict(prob=..., area_ratio_range=...,
            aspect_ratio_range=...)`` for batch CutMix of the strong view, or
            None to disable.
        rectifier: Optional ``PrototypeRectifier`` config applied to the
            teacher's softmax before pseudo-labelling.
        rep_head: Optional ``RepresentationHead`` config (U2PL).
        contrastive_loss: Optional ``U2PLContrastiveLoss`` config; needs
            ``rep_head``.
        sup_weight: Weight of the supervised losses.
        unsup_weight: Weight of the unsupervised cross-entropy (multiplies
            the labeler's own weight).
        unsup_class_weight: Optional per-class weights of the unsupervised
            cross-entropy (e.g. the supervised loss's ``class_weight``);
            None, as in the papers, weighs every pseudo-label class alike.
        class_balance: Config of a component that aligns the teacher's
            class distribution with the labeled data's before labelling
            (``DistributionAlignment``, the default; its ``num_classes`` is
            the student's), or None for the papers' raw softmax.
        data_preprocessor, unsup_start_iter, predict_on, channels_last,
            init_cfg: see :class:`SemiBaseSegmentor`.
    """

    teacher_student_names = (('teacher', 'student'), )

    def __init__(self,
                 segmentor: dict,
                 pseudo_labeler: dict = dict(type='EntropyPseudoLabeler'),
                 cutmix: Optional[dict] = dict(prob=1.0),
                 rectifier: Optional[dict] = None,
                 rep_head: Optional[dict] = None,
                 contrastive_loss: Optional[dict] = None,
                 sup_weight: float = 1.0,
                 unsup_weight: float = 1.0,
                 unsup_class_weight: Optional[Sequence[float]] = None,
                 class_balance: Optional[dict] = dict(
                     type='DistributionAlignment'),
                 data_preprocessor: Optional[dict] = None,
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher',
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=self.build_multi_branch_preprocessor(
                data_preprocessor, segmentor),
            unsup_start_iter=unsup_start_iter,
            predict_on=predict_on,
            channels_last=channels_last,
            init_cfg=init_cfg)
        with_contrastive = check_contrastive_pair(rep_head, contrastive_loss)
        self.teacher, self.student = self.build_teacher_student(segmentor)
        self.pseudo_labeler = MODELS.build(pseudo_labeler)
        self.rectifier = MODELS.build(rectifier) if rectifier else None
        num_classes = self.student.decode_head.num_classes
        self.class_balance = self.build_class_balance(class_balance,
                                                      num_classes)
        self.class_monitor = ClassShareMonitor(
            num_classes, self.pseudo_labeler.ignore_index)
        self.cutmix = dict(cutmix) if cutmix is not None else None
        self.sup_weight = sup_weight
        self.unsup_weight = unsup_weight
        self.register_unsup_class_weight(unsup_class_weight)
        check_class_weight_length(self.unsup_class_weight, self.student,
                                  'unsup_class_weight')
        if with_contrastive:
            self.teacher_rep_head, self.student_rep_head = build_rep_heads(
                rep_head, self.student)
            self.contrastive_loss = MODELS.build(contrastive_loss)
        else:
            self.student_rep_head = self.teacher_rep_head = None
            self.contrastive_loss = None
        self.apply_memory_format()

    def class_share_monitors(self) -> Dict[str, ClassShareMonitor]:
        return {'': self.class_monitor}

    @property
    def with_contrastive(self) -> bool:
        return self.contrastive_loss is not None

    def teacher_student_pairs(self) -> List[Tuple[nn.Module, nn.Module]]:
        pairs = super().teacher_student_pairs()
        if self.with_contrastive:
            pairs.append((self.teacher_rep_head, self.student_rep_head))
        return pairs

    # ------------------------------------------------------------------ loss
    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> dict:
        self.observe_labeled_classes(data_samples['labeled'],
                                     [self.class_balance])
        if not self.with_contrastive:
            losses = self.supervised_loss(self.student, inputs['labeled'],
                                          data_samples['labeled'])
            if self.unsup_active:
                pseudo = self.teacher_pseudo_labels(
                    self.teacher, inputs['weak'], data_samples['weak'])
                strong, (labels, ), _ = self.mix_strong_view(
                    inputs['strong'], pseudo.labels)
                logits, _ = forward_logits(self.student, strong)
                losses.update(self.unsupervised_loss(logits, labels, pseudo))
            return losses
        return self.loss_with_contrast(inputs, data_samples)

    def loss_with_contrast(self, inputs: Dict[str, Tensor],
                           data_samples: Dict[str, SampleList]) -> dict:
        """U2PL: the mean-teacher losses plus the pixel contrastive loss."""
        sup, _, student_feat_l = segmentor_loss_with_features(
            self.student, inputs['labeled'], data_samples['labeled'])
        losses = self.prefix_supervised(sup)
        if not self.unsup_active:
            return losses
        pseudo, teacher_feat_u = self.teacher_pseudo_labels(
            self.teacher, inputs['weak'], data_samples['weak'],
            with_features=True)
        strong, (labels, unreliable, probs_u), mask = self.mix_strong_view(
            inputs['strong'], pseudo.labels, pseudo.unreliable, pseudo.probs)
        logits_u, student_feat_u = forward_logits(
            self.student, strong, with_features=True)
        losses.update(self.unsupervised_loss(logits_u, labels, pseudo))
        losses[f'unsup_{self.contrastive_loss.loss_name}'] = \
            u2pl_contrastive_term(
                self.contrastive_loss, self.student_rep_head,
                self.teacher_rep_head, self.teacher, inputs['labeled'],
                data_samples['labeled'], student_feat_l, student_feat_u,
                teacher_feat_u, labels, unreliable, probs_u, mask)
        return losses

    # ------------------------------------------------------- building blocks
    def prefix_supervised(self, losses: dict) -> dict:
        return prefixed_losses(losses, 'sup_', self.sup_weight)

    def supervised_loss(self, student, inputs: Tensor,
                        data_samples: SampleList) -> dict:
        return self.prefix_supervised(student.loss(inputs, data_samples))

    @torch.no_grad()
    def teacher_pseudo_labels(self,
                              teacher,
                              inputs: Tensor,
                              data_samples: SampleList,
                              with_features: bool = False):
        """Teacher softmax on the weak view turned into pseudo-labels.

        With a rectifier, the softmax is first rectified by the class
        prototypes, which are then updated from this batch (rectify with
        what earlier batches taught, so a batch never votes on itself); it
        is then aligned by ``class_balance`` (if any).
        Returns the PseudoLabels, and the teacher's decoder feature too when
        ``with_features``.
        """
        need_features = with_features or self.rectifier is not None
        logits, features = forward_logits(teacher, inputs, need_features)
        valid = valid_pixel_mask(data_samples, *inputs.shape[2:],
                                 inputs.device)
        probs = logits.float().softmax(dim=1)
        pseudo = rectified_pseudo_labels(self.pseudo_labeler, self.rectifier,
                                         probs, features, valid,
                                         self.progress, self.class_balance,
                                         self.class_monitor)
        return (pseudo, features) if with_features else pseudo

    def mix_strong_view(self, strong: Tensor, *pixel_maps: Tensor):
        """CutMix the strong view and its per-pixel maps together.

        Returns the mixed image, the mixed maps, and ``(box_mask, perm)``
        (None without CutMix) for maps at another resolution.
        """
        return mix_with_box_mask(self.cutmix, strong, *pixel_maps)

    def unsupervised_loss(self, logits: Tensor, labels: Tensor,
                          pseudo: PseudoLabels) -> dict:
        ignore = self.pseudo_labeler.ignore_index
        loss = pseudo_label_cross_entropy(logits, labels, ignore,
                                          self.unsup_class_weight)
        losses = dict(unsup_loss_ce=loss * pseudo.weight * self.unsup_weight)
        losses.update(pseudo_label_stats(pseudo, prefix='unsup_'))
        return losses


def pseudo_label_stats(pseudo: PseudoLabels, prefix: str) -> dict:
    """Logged (not optimised) statistics of a pseudo-labelling step."""
    valid = pseudo.valid.sum().clamp_min(1)
    stats = {
        f'{prefix}weight': pseudo.weight.detach(),
        f'{prefix}reliable_ratio': pseudo.reliable.sum() / valid,
        f'{prefix}threshold': pseudo.threshold.detach(),
    }
    if pseudo.alpha is not None:
        stats[f'{prefix}alpha'] = torch.tensor(
            float(pseudo.alpha), device=pseudo.weight.device)
    if pseudo.rectified_ratio is not None:
        stats[f'{prefix}rectified_ratio'] = pseudo.rectified_ratio
    return stats
