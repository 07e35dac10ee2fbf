from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..pseudo_labelers import PseudoLabels
from ..utils import cutmix_batch, pseudo_label_cross_entropy
from .semi_base_segmentor import (SemiBaseSegmentor, forward_logits,
                                  valid_pixel_mask)


@MODELS.register_module()
class MeanTeacherSegmentor(SemiBaseSegmentor):
    """Mean teacher around any mmseg segmentor (the U2PL skeleton).

    Per step: the student's own supervised loss on the labeled batch; the
    teacher (an EMA of the student kept by :class:`EMATeacherHook`) labels the
    weak view; a pseudo-labeler turns its softmax into labels, a reliability
    mask and a loss weight; the strong view and every per-pixel map are
    CutMixed together; the student is trained on the mixed strong view
    against the mixed pseudo-labels (U2PL Eq. 3 with the labeler's weight,
    Eq. 8 for the entropy labeler).

    Losses are logged as ``sup_<mmseg key>`` and ``unsup_loss_ce``, plus the
    labeler's statistics (``unsup_weight``, ``unsup_reliable_ratio``,
    ``unsup_alpha``, ``unsup_threshold``), which are not summed into the loss.

    Args:
        segmentor: Config of any mmseg segmentor (EncoderDecoder...), used
            for the student; the teacher is a copy.
        pseudo_labeler: Config of a pseudo-labeler (entropy by default).
        cutmix: ``dict(prob=..., area_ratio_range=..., aspect_ratio_range=...)``
            for batch CutMix of the strong view, or None to disable.
        sup_weight: Weight of the supervised losses.
        unsup_weight: Weight of the unsupervised loss (multiplies the
            labeler's own weight).
        data_preprocessor, unsup_start_iter, predict_on, init_cfg: see
            :class:`SemiBaseSegmentor`.
    """

    teacher_student_names = (('teacher', 'student'), )

    def __init__(self,
                 segmentor: dict,
                 pseudo_labeler: dict = dict(type='EntropyPseudoLabeler'),
                 cutmix: Optional[dict] = dict(prob=1.0),
                 sup_weight: float = 1.0,
                 unsup_weight: float = 1.0,
                 data_preprocessor: Optional[dict] = None,
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=self.build_multi_branch_preprocessor(
                data_preprocessor, segmentor),
            unsup_start_iter=unsup_start_iter,
            predict_on=predict_on,
            init_cfg=init_cfg)
        self.teacher, self.student = self.build_teacher_student(segmentor)
        self.pseudo_labeler = MODELS.build(pseudo_labeler)
        self.cutmix = dict(cutmix) if cutmix is not None else None
        self.sup_weight = sup_weight
        self.unsup_weight = unsup_weight

    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> dict:
        losses = self.supervised_loss(self.student, inputs['labeled'],
                                      data_samples['labeled'])
        if self.unsup_active:
            pseudo = self.teacher_pseudo_labels(self.teacher, inputs['weak'],
                                                data_samples['weak'])
            strong, labels = self.mix_strong_view(inputs['strong'], pseudo)
            logits, _ = forward_logits(self.student, strong)
            losses.update(self.unsupervised_loss(logits, labels, pseudo))
        return losses

    # ---------------------------------------------------------- building blocks
    def supervised_loss(self, student, inputs: Tensor,
                        data_samples: SampleList) -> dict:
        losses = student.loss(inputs, data_samples)
        return {
            f'sup_{key}': scale_if_loss(key, value, self.sup_weight)
            for key, value in losses.items()
        }

    @torch.no_grad()
    def teacher_pseudo_labels(self, teacher, inputs: Tensor,
                              data_samples: SampleList) -> PseudoLabels:
        """Teacher softmax on the weak view turned into pseudo-labels."""
        logits, _ = forward_logits(teacher, inputs)
        valid = valid_pixel_mask(data_samples, *inputs.shape[2:],
                                 inputs.device)
        probs = logits.float().softmax(dim=1)
        return self.pseudo_labeler(probs, valid, self.progress)

    def mix_strong_view(self, strong: Tensor,
                        pseudo: PseudoLabels) -> Tuple[Tensor, Tensor]:
        """CutMix the strong view and its pseudo-labels together."""
        if self.cutmix is None:
            return strong, pseudo.labels
        strong, (labels, ), _, _ = cutmix_batch(strong, pseudo.labels,
                                                **self.cutmix)
        return strong, labels

    def unsupervised_loss(self, logits: Tensor, labels: Tensor,
                          pseudo: PseudoLabels) -> dict:
        ignore = self.pseudo_labeler.ignore_index
        loss = pseudo_label_cross_entropy(logits, labels, ignore)
        losses = dict(unsup_loss_ce=loss * pseudo.weight * self.unsup_weight)
        losses.update(pseudo_label_stats(pseudo, prefix='unsup_'))
        return losses


def scale_if_loss(key: str, value, weight: float):
    """Scale loss terms (mmengine sums keys containing 'loss'); keep stats."""
    if 'loss' not in key or weight == 1.0:
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(v * weight for v in value)
    return value * weight


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
    return stats
