"""RML: two noisy students, each with its own rectified EMA teacher."""
import copy
from typing import Dict, List, Optional, Sequence

from torch import Tensor, nn

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ...utils.checkpoint_loading import load_stage2_state
from ..pseudo_labelers import PseudoLabels
from ..utils.mutual_learning_functional import mutual_learning_losses
from ..utils.segmentor_forward import forward_logits
from ..utils.teacher_agreement import (argmax_agreement,
                                       mean_probability_logits,
                                       total_variation_distance)
from .semi_base_segmentor import SemiBaseSegmentor, loss_weight
from .teacher_student import TeacherStudent

#: ``predict_on`` value that averages the two teachers' softmax.
ENSEMBLE = 'ensemble'
#: Keys a ``stage2_init`` dict may hold.
STAGE2_INIT_KEYS = ('checkpoint', 'load_rectifiers')
#: Preprocessor settings that must agree between the two students: the
#: wrapper normalises every batch once, for both of them.
NORMALISATION_KEYS = ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr')


@MODELS.register_module()
class DualStudentSegmentor(SemiBaseSegmentor):
    """Robust mutual learning (RML, Zhang et al. 2021, arXiv 2106.00609).

    Two students, built from two mmseg segmentor configs (the same or
    different architectures), each with its own EMA teacher kept by
    :class:`EMATeacherHook`. Per step:

    1. each student's supervised loss on the labeled batch;
    2. each teacher labels the weak view: its softmax ``p`` is rectified by
       its own :class:`PrototypeRectifier` (prototypes in that teacher's
       decoder feature space, Eq. 6 and 9-11), which is then updated from
       the teacher's raw batch; the pseudo-labeler turns the rectified
       probabilities into hard labels;
    3. the strong view and both teachers' labels are CutMixed with the same
       boxes, and each student is trained on the mixed view against both
       teachers' labels (Eq. 5): ``unsup<i>_own_loss_ce`` against its own
       teacher, ``unsup<i>_peer_loss_ce`` against the other student's
       teacher. Students never see each other's outputs, only the peer's
       (slowly moving, rectified) teacher.

    Model noise (dropout before the classifier, stochastic depth) makes the
    students, and through the EMA their teachers, differ; teachers are deep
    copies in eval mode, so the noise is inert in them.

    The default pseudo-labeler, ``ConfidencePseudoLabeler(threshold=0.0)``,
    is RML's choice: the hard arg-max of the rectified probabilities on
    every valid (non-padding) pixel, with weight 1, so each term is the mean
    cross-entropy over the batch's pixels. Any labeler config (e.g. an
    entropy labeler) may replace it; it then filters the rectified
    probabilities.

    Logged, not optimised (keys without 'loss'): per teacher
    ``unsup<i>_rectified_ratio`` (fraction of valid pixels whose arg-max
    the rectification changed) and the labeler's statistics
    (``unsup<i>_reliable_ratio``...); for the pair,
    ``unsup_teacher_agreement`` (fraction of valid pixels where the two
    teachers' pseudo-labels, the rectified arg-max, are equal) and
    ``unsup_teacher_tv_distance`` (total variation distance between their
    raw softmax outputs, the paper's coupling measure of Fig. 2).

    With ``rep_head`` and ``contrastive_loss`` each student also carries
    U2PL's contrastive head (U2PL Sec. 3.3, Eq. 4, 9-16): its own
    representation head ``student<i>_rep_head`` with an EMA copy
    ``teacher<i>_rep_head``, and its own loss ``contrastive_loss<i>`` with
    its own memory bank, fed by teacher ``i`` only (its representations,
    probabilities, pseudo-labels and unreliable pixels). It is logged as
    ``unsup<i>_loss_contrast``. Unreliable pixels are those the labeler
    does not select, so RML's default labeler (threshold 0 selects every
    pixel) leaves no Eq. 15 negatives: use an entropy labeler with it.

    Prediction (``predict_on``) uses ``teacher1``, ``student1``,
    ``teacher2``, ``student2`` or ``ensemble`` (the average of the two
    teachers' softmax); :class:`TeacherStudentValLoop` reports all five.

    Args:
        segmentor1: mmseg segmentor config of student 1 (and teacher 1).
        segmentor2: Config of student 2; None uses ``segmentor1`` again
            (the students then differ by initialisation and noise only).
            Both must have the same ``num_classes`` and, when they set a
            ``data_preprocessor``, the same normalisation: one preprocessor
            (``data_preprocessor``, else ``segmentor1``'s) serves both.
        student1_noise: Keyword arguments of :func:`apply_model_noise` for
            student 1 (``dropout``, ``drop_path``, ``drop_path_schedule``),
            or None for no noise. ``drop_path`` needs an mmseg ResNet; give
            backbones with their own ``drop_path_rate`` (EfficientNet-Lite,
            MiT) their stochastic depth in the segmentor config instead.
        student2_noise: The same for student 2.
        rectifier: :class:`PrototypeRectifier` config shared by both
            teachers; ``num_classes``/``feat_channels`` are read from each
            student's decode head; None uses the raw softmax.
        pseudo_labeler: Pseudo-labeler config, see above.
        cutmix: ``dict(prob=..., area_ratio_range=...,
            aspect_ratio_range=...)`` for :func:`cutmix_batch`, or None.
        rep_head: Optional ``RepresentationHead`` config, built once per
            student; ``in_channels`` defaults to that student's classifier
            input channels (so heterogeneous students need no per-student
            config). ``feature_source`` names another decode-head module
            whose input the head reads (see :class:`TeacherStudent`).
        contrastive_loss: Optional ``U2PLContrastiveLoss`` config, built
            once per student; ``num_classes`` defaults to the students'.
            Given with ``rep_head`` or not at all.
        sup_weight: Weight of both students' supervised losses.
        unsup1_own_weight: Weight of student 1's loss on teacher 1's labels.
        unsup1_peer_weight: Weight of student 1's loss on teacher 2's labels.
        unsup2_own_weight: Weight of student 2's loss on teacher 2's labels.
        unsup2_peer_weight: Weight of student 2's loss on teacher 1's labels.
        unsup_class_weight: Optional per-class weights of the four
            pseudo-label cross-entropies; None (the paper) weighs classes
            alike.
        class_balance: Config of the component that aligns each teacher's
            class distribution with the labeled data's after rectification
            (``DistributionAlignment`` by default, one per teacher), or None
            for the paper's raw softmax.
        remove_class_weights: Divide each teacher's softmax by the class
            weights of its student's supervised loss, raised to the training
            progress ``t / T``, before pseudo-labelling: a network trained
            with weights ``c`` predicts ``q_k ~ c_k p(k|x)`` and its arg-max
            over-predicts the up-weighted classes, while a weak early
            teacher's unweighted posterior is mostly the dominant class (a
            no-op without class weights, e.g. the papers' configs).
        stage2_init: RML's second stage: ``dict(checkpoint=PATH,
            load_rectifiers=True)`` names a checkpoint of this segmentor
            (stage 1); :meth:`init_weights` starts both teacher ``i`` and
            student ``i`` from stage 1's teacher ``i`` (and, with
            ``load_rectifiers``, its prototypes). None: stage 1.
        data_preprocessor, unsup_start_iter, channels_last, init_cfg: see
            :class:`SemiBaseSegmentor`.
        train_cfg, pretrained: see :class:`SemiBaseSegmentor`.
        predict_on: One of :meth:`predict_choices`.
    """

    def __init__(self,
                 segmentor1: dict,
                 segmentor2: Optional[dict] = None,
                 student1_noise: Optional[dict] = dict(
                     dropout=0.5, drop_path=0.0),
                 student2_noise: Optional[dict] = dict(
                     dropout=0.5, drop_path=0.0),
                 rectifier: Optional[dict] = dict(type='PrototypeRectifier'),
                 pseudo_labeler: dict = dict(
                     type='ConfidencePseudoLabeler', threshold=0.0),
                 cutmix: Optional[dict] = dict(prob=1.0),
                 rep_head: Optional[dict] = None,
                 contrastive_loss: Optional[dict] = None,
                 sup_weight: float = 1.0,
                 unsup1_own_weight: float = 1.0,
                 unsup1_peer_weight: float = 1.0,
                 unsup2_own_weight: float = 1.0,
                 unsup2_peer_weight: float = 1.0,
                 unsup_class_weight: Optional[Sequence[float]] = None,
                 class_balance: Optional[dict] = dict(
                     type='DistributionAlignment'),
                 remove_class_weights: bool = True,
                 stage2_init: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher1',
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None) -> None:
        if segmentor2 is None:
            segmentor2 = copy.deepcopy(segmentor1)
        data_preprocessor = self.build_multi_branch_preprocessor(
            data_preprocessor, segmentor1)
        check_shared_normalisation(data_preprocessor['data_preprocessor'],
                                   dict(segmentor1=segmentor1,
                                        segmentor2=segmentor2))
        super().__init__(
            data_preprocessor=data_preprocessor,
            cutmix=cutmix,
            sup_weight=sup_weight,
            unsup_class_weight=unsup_class_weight,
            unsup_start_iter=unsup_start_iter,
            predict_on=predict_on,
            channels_last=channels_last,
            init_cfg=init_cfg,
            train_cfg=train_cfg,
            pretrained=pretrained)
        self.pseudo_labeler = MODELS.build(pseudo_labeler)
        # Both networks first, then the components: the order in which
        # they draw their random initial weights.
        pairs = [
            TeacherStudent(segmentor1, self.pseudo_labeler, '1',
                           student1_noise, remove_class_weights),
            TeacherStudent(segmentor2, self.pseudo_labeler, '2',
                           student2_noise, remove_class_weights)
        ]
        check_same_num_classes(pairs[0].student, pairs[1].student)
        for pair in pairs:
            pair.build_components(rectifier, class_balance, rep_head,
                                  contrastive_loss)
        self.unsup_weights = dict(
            own1=loss_weight('unsup1_own_weight', unsup1_own_weight),
            peer1=loss_weight('unsup1_peer_weight', unsup1_peer_weight),
            own2=loss_weight('unsup2_own_weight', unsup2_own_weight),
            peer2=loss_weight('unsup2_peer_weight', unsup2_peer_weight))
        self.stage2_init = check_stage2_init(stage2_init)
        self.register_pairs(pairs)

    # ------------------------------------------------------------ structure
    def segmentor_teachers(self) -> List[nn.Module]:
        """``teacher1`` and ``teacher2``, the networks that label and
        predict (not their representation heads)."""
        return [pair.teacher for pair in self.pairs]

    def predict_choices(self) -> List[str]:
        return self.segmentor_names + [ENSEMBLE]

    def predict_model(self) -> nn.Module:
        if self.predict_on == ENSEMBLE:
            raise RuntimeError(
                "predict_on='ensemble' averages two networks; use predict() "
                'or forward(mode=...) instead of predict_model()')
        return super().predict_model()

    # ------------------------------------------------------------- training
    def pseudo_label_losses(self, student_logits: List[Tensor],
                            labels: List[Tensor],
                            pseudos: List[PseudoLabels]) -> dict:
        """RML Eq. 5: each student against its own teacher's and its peer's
        teacher's labels."""
        (logits1, logits2), (labels1, labels2) = student_logits, labels
        pseudo1, pseudo2 = pseudos
        weights = self.unsup_weights
        ignore_index = self.pseudo_labeler.ignore_index
        losses = mutual_learning_losses(
            logits1,
            own=(labels1, pseudo1.weight * weights['own1']),
            peer=(labels2, pseudo2.weight * weights['peer1']),
            ignore_index=ignore_index,
            prefix='unsup1_',
            class_weight=self.unsup_class_weight)
        losses.update(
            mutual_learning_losses(
                logits2,
                own=(labels2, pseudo2.weight * weights['own2']),
                peer=(labels1, pseudo1.weight * weights['peer2']),
                ignore_index=ignore_index,
                prefix='unsup2_',
                class_weight=self.unsup_class_weight))
        return losses

    def teacher_statistics(self, teacher_outputs, valid: Tensor) -> dict:
        """How much the two teachers agree (pseudo-labels) and how far
        apart their raw softmax outputs are (the paper's Fig. 2)."""
        output1, output2 = teacher_outputs
        return dict(
            unsup_teacher_agreement=argmax_agreement(
                output1.pseudo.probs, output2.pseudo.probs, valid),
            unsup_teacher_tv_distance=total_variation_distance(
                output1.probs, output2.probs, valid))

    # ----------------------------------------------------------- prediction
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'tensor' and self.predict_on == ENSEMBLE:
            return self.ensemble_logits(inputs)
        return super().forward(inputs, data_samples, mode)

    def predict(self,
                inputs: Tensor,
                data_samples: Optional[SampleList] = None) -> SampleList:
        if self.predict_on != ENSEMBLE:
            return super().predict(inputs, data_samples)
        return self.predict_ensemble(inputs, data_samples)

    def predict_ensemble(self,
                         inputs: Tensor,
                         data_samples: Optional[SampleList] = None
                         ) -> SampleList:
        """mmseg ``predict`` with the two teachers' softmax averaged.

        Each teacher runs its own ``inference`` (its ``test_cfg``: whole or
        slide), and ``teacher1.postprocess_result`` removes padding, undoes
        flips, resizes to the original shape and takes the arg-max. The
        stored ``seg_logits`` are the log of the averaged probabilities.
        """
        batch_img_metas = img_metas_for_inference(inputs, data_samples)
        probs = []
        for teacher in self.segmentor_teachers():
            logits = teacher.inference(inputs, batch_img_metas)
            probs.append(logits.float().softmax(dim=1))
        if probs[0].shape != probs[1].shape:
            raise ValueError(
                f'teacher1 and teacher2 infer logits of shapes '
                f'{tuple(probs[0].shape)} and {tuple(probs[1].shape)}; the '
                'ensemble needs one shape: give both segmentors the same '
                'test_cfg mode')
        return self.teacher1.postprocess_result(
            mean_probability_logits(probs), data_samples)

    def ensemble_logits(self, inputs: Tensor) -> Tensor:
        """``tensor`` mode of the ensemble: log of the averaged teacher
        softmax at input resolution, (B, C, H, W)."""
        probs = [
            forward_logits(teacher, inputs)[0].float().softmax(dim=1)
            for teacher in self.segmentor_teachers()
        ]
        return mean_probability_logits(probs)

    # -------------------------------------------------------- initialisation
    def init_weights(self) -> None:
        """Initialise (each teacher a copy of its student), then apply
        ``stage2_init``."""
        super().init_weights()
        if self.stage2_init is not None:
            load_stage2_state(
                self, **self.stage2_init,
                teacher_student_names=self.teacher_student_names,
                rectifier_names=[
                    f'rectifier{pair.name}' for pair in self.pairs
                    if pair.rectifier is not None
                ])


# ---------------------------------------------------------------- helpers


def check_same_num_classes(student1: nn.Module, student2: nn.Module) -> None:
    """Both students must predict the same classes: each learns from the
    other's teacher."""
    num_classes1 = getattr(student1, 'num_classes', None)
    num_classes2 = getattr(student2, 'num_classes', None)
    if num_classes1 != num_classes2:
        raise ValueError(
            f'segmentor1 has num_classes={num_classes1} but segmentor2 has '
            f'num_classes={num_classes2}; mutual learning needs the same '
            'classes in both students')


def check_shared_normalisation(preprocessor: dict,
                               segmentors: Dict[str, dict]) -> None:
    """Raise if a segmentor's own preprocessor normalises differently from
    the one the wrapper applies to both students."""
    for name, segmentor in segmentors.items():
        own = segmentor.get('data_preprocessor')
        if own is None:
            continue
        for key in NORMALISATION_KEYS:
            used, wanted = preprocessor.get(key), own.get(key)
            if wanted is not None and used is not None \
                    and list_if_sequence(used) != list_if_sequence(wanted):
                raise ValueError(
                    f'{name}.data_preprocessor.{key}={wanted!r} differs '
                    f'from {key}={used!r} of the data_preprocessor shared '
                    'by both students; give both segmentors the same '
                    'normalisation')


def list_if_sequence(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def check_stage2_init(stage2_init: Optional[dict]) -> Optional[dict]:
    """Validate ``stage2_init`` (None or ``dict(checkpoint=str, ...)``)."""
    if stage2_init is None:
        return None
    if not isinstance(stage2_init, dict) \
            or not isinstance(stage2_init.get('checkpoint'), str) \
            or set(stage2_init) - set(STAGE2_INIT_KEYS):
        raise ValueError(
            f'stage2_init must be None or a dict with a str "checkpoint" '
            f'and optionally "load_rectifiers", got {stage2_init!r}')
    return dict(stage2_init)


def img_metas_for_inference(inputs: Tensor,
                            data_samples: Optional[SampleList]) -> List[dict]:
    """What mmseg's ``EncoderDecoder.predict`` passes to ``inference``."""
    if data_samples is not None:
        return [sample.metainfo for sample in data_samples]
    shape = inputs.shape[2:]
    return [
        dict(
            ori_shape=shape,
            img_shape=shape,
            pad_shape=shape,
            padding_size=[0, 0, 0, 0])
    ] * inputs.shape[0]
