from typing import List, Optional, Sequence

from torch import Tensor

from mmseg.registry import MODELS
from ..pseudo_labelers import PseudoLabels
from ..utils import pseudo_label_cross_entropy
from .semi_base_segmentor import SemiBaseSegmentor, loss_weight
from .teacher_student import TeacherStudent


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
    representation head runs on a decoder feature of each network (the
    classifier input unless ``feature_source`` says otherwise); the
    student's representations of labeled and unlabeled pixels are anchors,
    the teacher's give positives and the negatives kept in per-class memory
    banks (Eq. 4, 9-16). The teacher's representation head is the EMA of
    the student's; the loss (and its memory bank) lives in this wrapper,
    outside both, so it is neither averaged nor copied.

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
            teacher's softmax before pseudo-labelling; ``num_classes`` and
            ``feat_channels`` are read from the student.
        rep_head: Optional ``RepresentationHead`` config (U2PL);
            ``in_channels`` is read from the student. The head reads the
            classifier input, or with ``feature_source='<module>'`` (and
            ``in_channels`` given) the input of that decode-head module,
            e.g. ``'sep_bottleneck'``: U2PL's fused decoder feature, which
            keeps the contrastive loss off the classifier's conv blocks
            (see :class:`TeacherStudent`).
        contrastive_loss: Optional ``U2PLContrastiveLoss`` config; needs
            ``rep_head``; ``num_classes`` is read from the student.
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
        remove_class_weights: Divide each teacher's softmax by the class
            weights of its student's supervised loss, raised to the training
            progress ``t / T``, before pseudo-labelling: a network trained
            with weights ``c`` predicts ``q_k ~ c_k p(k|x)`` and its arg-max
            over-predicts the up-weighted classes, while a weak early
            teacher's unweighted posterior is mostly the dominant class (a
            no-op without class weights, e.g. the papers' configs).
        data_preprocessor, unsup_start_iter, predict_on, channels_last,
            init_cfg: see :class:`SemiBaseSegmentor`.
        train_cfg, pretrained: see :class:`SemiBaseSegmentor`.
    """

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
                 remove_class_weights: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher',
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None) -> None:
        super().__init__(
            data_preprocessor=self.build_multi_branch_preprocessor(
                data_preprocessor, segmentor),
            cutmix=cutmix,
            sup_weight=sup_weight,
            unsup_class_weight=unsup_class_weight,
            unsup_start_iter=unsup_start_iter,
            predict_on=predict_on,
            channels_last=channels_last,
            init_cfg=init_cfg,
            train_cfg=train_cfg,
            pretrained=pretrained)
        self.unsup_weight = loss_weight('unsup_weight', unsup_weight)
        self.pseudo_labeler = MODELS.build(pseudo_labeler)
        pair = TeacherStudent(
            segmentor,
            self.pseudo_labeler,
            remove_class_weights=remove_class_weights)
        pair.build_components(rectifier, class_balance, rep_head,
                              contrastive_loss)
        self.register_pairs([pair])

    def pseudo_label_losses(self, student_logits: List[Tensor],
                            labels: List[Tensor],
                            pseudos: List[PseudoLabels]) -> dict:
        """U2PL Eq. 3: cross-entropy against the pseudo-labels, times the
        labeler's weight (Eq. 8 for the entropy labeler)."""
        (logits, ), (labels, ), (pseudo, ) = student_logits, labels, pseudos
        loss = pseudo_label_cross_entropy(logits, labels,
                                          self.pseudo_labeler.ignore_index,
                                          self.unsup_class_weight)
        return dict(unsup_loss_ce=loss * pseudo.weight * self.unsup_weight)
