"""RML: two noisy students, each with its own rectified EMA teacher."""
import copy
import os.path as osp
import re
from numbers import Real
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.runner.checkpoint import _load_checkpoint
from torch import Tensor, nn

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..pseudo_labelers import PseudoLabels
from ..utils import pseudo_label_cross_entropy
from ..utils.class_share_monitor import ClassShareMonitor
from ..utils.model_noise import apply_model_noise
from ..utils.teacher_agreement import (argmax_agreement,
                                       mean_probability_logits,
                                       total_variation_distance)
from .contrastive_step import (build_rep_heads, check_contrastive_pair,
                               mix_with_box_mask, u2pl_contrastive_term)
from .mean_teacher_segmentor import pseudo_label_stats
from .semi_base_segmentor import (SemiBaseSegmentor,
                                  check_class_weight_length, forward_logits,
                                  freeze,
                                  prefixed_losses, rectified_pseudo_labels,
                                  segmentor_loss_with_features,
                                  valid_pixel_mask)

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
            teachers, without ``num_classes``/``feat_channels`` (read from
            each teacher's decode head); None uses the raw softmax.
        pseudo_labeler: Pseudo-labeler config, see above.
        cutmix: ``dict(prob=..., area_ratio_range=...,
            aspect_ratio_range=...)`` for :func:`cutmix_batch`, or None.
        rep_head: Optional ``RepresentationHead`` config, built once per
            student; ``in_channels`` defaults to that student's classifier
            input channels (so heterogeneous students need no per-student
            config).
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
        stage2_init: RML's second stage: ``dict(checkpoint=PATH,
            load_rectifiers=True)`` names a checkpoint of this segmentor
            (stage 1); :meth:`init_weights` starts both teacher ``i`` and
            student ``i`` from stage 1's teacher ``i`` (and, with
            ``load_rectifiers``, its prototypes). None: stage 1.
        data_preprocessor, unsup_start_iter, channels_last, init_cfg: see
            :class:`SemiBaseSegmentor`.
        predict_on: One of :meth:`predict_choices`.
    """

    teacher_student_names = (('teacher1', 'student1'), ('teacher2',
                                                        'student2'))
    #: Rectifier attribute of each teacher, in ``teacher_student_names``
    #: order.
    rectifier_names = ('rectifier1', 'rectifier2')

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
                 stage2_init: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher1',
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        if segmentor2 is None:
            segmentor2 = copy.deepcopy(segmentor1)
        data_preprocessor = self.build_multi_branch_preprocessor(
            data_preprocessor, segmentor1)
        check_shared_normalisation(data_preprocessor['data_preprocessor'],
                                   dict(segmentor1=segmentor1,
                                        segmentor2=segmentor2))
        super().__init__(
            data_preprocessor=data_preprocessor,
            unsup_start_iter=unsup_start_iter,
            predict_on=predict_on,
            channels_last=channels_last,
            init_cfg=init_cfg)
        self.teacher1, self.student1 = build_noisy_teacher_student(
            segmentor1, student1_noise)
        self.teacher2, self.student2 = build_noisy_teacher_student(
            segmentor2, student2_noise)
        check_same_num_classes(self.student1, self.student2)
        self.pseudo_labeler = MODELS.build(pseudo_labeler)
        ignore_index = self.pseudo_labeler.ignore_index
        self.rectifier1 = build_rectifier(rectifier, self.teacher1,
                                          ignore_index)
        self.rectifier2 = build_rectifier(rectifier, self.teacher2,
                                          ignore_index)
        num_classes = self.student1.decode_head.num_classes
        for index in (1, 2):
            setattr(self, f'class_balance{index}',
                    self.build_class_balance(class_balance, num_classes))
            setattr(self, f'class_monitor{index}',
                    ClassShareMonitor(num_classes, ignore_index))
        self.cutmix = dict(cutmix) if cutmix is not None else None
        self.with_contrastive = check_contrastive_pair(
            rep_head, contrastive_loss)
        for index, student in ((1, self.student1), (2, self.student2)):
            teacher_rep_head, student_rep_head, loss = (None, None, None)
            if self.with_contrastive:
                teacher_rep_head, student_rep_head = build_rep_heads(
                    student_rep_head_cfg(rep_head, student, index), student)
                loss = MODELS.build(
                    dict(contrastive_loss,
                         num_classes=contrastive_loss.get(
                             'num_classes', student.num_classes)))
            setattr(self, f'teacher{index}_rep_head', teacher_rep_head)
            setattr(self, f'student{index}_rep_head', student_rep_head)
            setattr(self, f'contrastive_loss{index}', loss)
        self.sup_weight = check_loss_weight('sup_weight', sup_weight)
        self.unsup_weights = dict(
            own1=check_loss_weight('unsup1_own_weight', unsup1_own_weight),
            peer1=check_loss_weight('unsup1_peer_weight',
                                    unsup1_peer_weight),
            own2=check_loss_weight('unsup2_own_weight', unsup2_own_weight),
            peer2=check_loss_weight('unsup2_peer_weight',
                                    unsup2_peer_weight))
        self.register_unsup_class_weight(unsup_class_weight)
        check_class_weight_length(self.unsup_class_weight, self.student1,
                                  'unsup_class_weight')
        self.stage2_init = check_stage2_init(stage2_init)
        self.apply_memory_format()

    # ------------------------------------------------------------ structure
    def rectifiers(self) -> List[Optional[nn.Module]]:
        return [getattr(self, name) for name in self.rectifier_names]

    def class_share_monitors(self) -> Dict[str, ClassShareMonitor]:
        return {'teacher1/': self.class_monitor1,
                'teacher2/': self.class_monitor2}

    def teacher_student_pairs(self) -> List[Tuple[nn.Module, nn.Module]]:
        """The segmentor pairs, then the representation-head pairs (so the
        EMA hook averages the heads and ``train()`` keeps them in eval)."""
        pairs = super().teacher_student_pairs()
        if self.with_contrastive:
            pairs += [(self.teacher1_rep_head, self.student1_rep_head),
                      (self.teacher2_rep_head, self.student2_rep_head)]
        return pairs

    def segmentor_teachers(self) -> List[nn.Module]:
        """``teacher1`` and ``teacher2``, the networks that label and
        predict (not their representation heads)."""
        return [getattr(self, teacher)
                for teacher, _ in self.teacher_student_names]

    def predict_choices(self) -> List[str]:
        return self.segmentor_names + [ENSEMBLE]

    def predict_model(self) -> nn.Module:
        if self.predict_on == ENSEMBLE:
            raise RuntimeError(
                "predict_on='ensemble' averages two networks; use predict() "
                'or forward(mode=...) instead of predict_model()')
        return super().predict_model()

    # ------------------------------------------------------------- training
    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> dict:
        self.observe_labeled_classes(
            data_samples['labeled'],
            [self.class_balance1, self.class_balance2])
        losses = {}
        student_feats_l = []
        for index, student in ((1, self.student1), (2, self.student2)):
            if self.with_contrastive:
                # One forward gives the loss and the decoder feature that
                # the representation head runs on.
                student_losses, _, feat_l = segmentor_loss_with_features(
                    student, inputs['labeled'], data_samples['labeled'])
                student_feats_l.append(feat_l)
            else:
                student_losses = student.loss(inputs['labeled'],
                                              data_samples['labeled'])
            losses.update(
                prefixed_losses(student_losses, f'sup{index}_',
                                self.sup_weight))
        if not self.unsup_active:
            return losses

        weak = inputs['weak']
        valid = valid_pixel_mask(data_samples['weak'], *weak.shape[2:],
                                 weak.device)
        (raw1, pseudo1, teacher_feat1), (raw2, pseudo2, teacher_feat2) = [
            self.teacher_pseudo_labels(index, weak, valid,
                                       self.with_contrastive)
            for index in (1, 2)
        ]
        pixel_maps = [pseudo1.labels, pseudo2.labels]
        if self.with_contrastive:
            pixel_maps += [pseudo1.unreliable, pseudo2.unreliable,
                           pseudo1.probs, pseudo2.probs]
        strong, pixel_maps, cutmix_mask = mix_with_box_mask(
            self.cutmix, inputs['strong'], *pixel_maps)
        labels1, labels2 = pixel_maps[:2]
        logits1, student_feat1 = forward_logits(
            self.student1, strong, with_features=self.with_contrastive)
        logits2, student_feat2 = forward_logits(
            self.student2, strong, with_features=self.with_contrastive)
        ignore_index = self.pseudo_labeler.ignore_index
        weights = self.unsup_weights
        losses.update(
            mutual_learning_losses(
                logits1,
                own=(labels1, pseudo1.weight * weights['own1']),
                peer=(labels2, pseudo2.weight * weights['peer1']),
                ignore_index=ignore_index,
                prefix='unsup1_',
                class_weight=self.unsup_class_weight))
        losses.update(
            mutual_learning_losses(
                logits2,
                own=(labels2, pseudo2.weight * weights['own2']),
                peer=(labels1, pseudo1.weight * weights['peer2']),
                ignore_index=ignore_index,
                prefix='unsup2_',
                class_weight=self.unsup_class_weight))
        for index, pseudo in ((1, pseudo1), (2, pseudo2)):
            losses.update(pseudo_label_stats(pseudo, prefix=f'unsup{index}_'))
        losses['unsup_teacher_agreement'] = argmax_agreement(
            pseudo1.probs, pseudo2.probs, valid)
        losses['unsup_teacher_tv_distance'] = total_variation_distance(
            raw1, raw2, valid)
        if self.with_contrastive:
            # Student i's contrastive term sees teacher i only: its
            # representations, probabilities and (un)reliable pixels.
            _, _, unreliable1, unreliable2, probs1, probs2 = pixel_maps
            per_student = (
                (1, student_feat1, teacher_feat1, labels1, unreliable1,
                 probs1),
                (2, student_feat2, teacher_feat2, labels2, unreliable2,
                 probs2))
            for index, feat_u, teacher_feat_u, labels, unreliable, probs \
                    in per_student:
                loss = getattr(self, f'contrastive_loss{index}')
                losses[f'unsup{index}_{loss.loss_name}'] = \
                    u2pl_contrastive_term(
                        loss, getattr(self, f'student{index}_rep_head'),
                        getattr(self, f'teacher{index}_rep_head'),
                        getattr(self, f'teacher{index}'), inputs['labeled'],
                        data_samples['labeled'], student_feats_l[index - 1],
                        feat_u, teacher_feat_u, labels, unreliable, probs,
                        cutmix_mask)
        return losses

    @torch.no_grad()
    def teacher_pseudo_labels(
            self,
            index: int,
            weak: Tensor,
            valid: Tensor,
            with_features: bool = False
    ) -> Tuple[Tensor, PseudoLabels, Optional[Tensor]]:
        """Teacher ``index``'s (1 or 2) raw softmax and its pseudo-labels.

        The teacher's own class-balance component aligns the softmax and its
        rectifier rectifies it; the rectifier judges the batch with
        prototypes from earlier batches and is then updated from the
        aligned, not rectified, softmax, so the prototypes never vote on the
        labels they produce. The teacher's class-share monitor counts the
        result.

        Returns:
            ``(probs, pseudo, feats)``: float32 (B, C, H, W) raw softmax;
            the labeler's :class:`PseudoLabels` of the rectified
            probabilities, with ``rectified_ratio`` (fraction of valid
            pixels whose arg-max the rectifier changed) set when there is a
            rectifier; the teacher's decoder feature when there is a
            rectifier or ``with_features``, else None.
        """
        teacher = getattr(self, f'teacher{index}')
        rectifier = getattr(self, f'rectifier{index}')
        need_features = with_features or rectifier is not None
        logits, feats = forward_logits(teacher, weak, need_features)
        probs = logits.float().softmax(dim=1)
        return probs, rectified_pseudo_labels(
            self.pseudo_labeler, rectifier, probs, feats, valid,
            self.progress, getattr(self, f'class_balance{index}'),
            getattr(self, f'class_monitor{index}')), feats

    def mix_strong_view(self, strong: Tensor, labels1: Tensor,
                        labels2: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """CutMix the strong view and both teachers' labels with one set of
        boxes, so both students see one mixed image and aligned labels."""
        strong, (labels1, labels2), _ = mix_with_box_mask(
            self.cutmix, strong, labels1, labels2)
        return strong, labels1, labels2

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
        """Initialise, make each teacher equal to its student, then apply
        ``stage2_init``.

        Students and teachers are initialised independently by mmengine
        (random heads differ); copying keeps the first pseudo-labels coming
        from the network the student actually is.
        """
        super().init_weights()
        with torch.no_grad():
            for teacher, student in self.teacher_student_pairs():
                teacher.load_state_dict(student.state_dict())
        if self.stage2_init is not None:
            self.load_stage2_init(**self.stage2_init)

    def load_stage2_init(self,
                         checkpoint: str,
                         load_rectifiers: bool = True) -> None:
        """Start every teacher and student from a stage-1 checkpoint's
        teachers (RML's two-stage training)."""
        if '://' not in checkpoint and not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'stage2_init checkpoint={checkpoint!r} does not exist; '
                'train stage 1 first and point stage2_init.checkpoint at its '
                'checkpoint')
        loaded = _load_checkpoint(checkpoint, map_location='cpu')
        state = strip_wrapper_prefix(loaded.get('state_dict', loaded))
        rectifier_names = [
            name for name, rectifier in zip(self.rectifier_names,
                                            self.rectifiers())
            if rectifier is not None
        ] if load_rectifiers else []
        init_state = stage2_state_dict(state, self.teacher_student_names,
                                       rectifier_names)
        missing, _ = self.load_state_dict(init_state, strict=False)
        expected = tuple(f'{name}.' for name in self.segmentor_names +
                         rectifier_names)
        missing = [key for key in missing if key.startswith(expected)]
        if missing:
            raise KeyError(
                f'stage2_init checkpoint={checkpoint!r} does not fill '
                f'{len(missing)} tensor(s) of this model, e.g. '
                f'{missing[:3]}; was it written by a DualStudentSegmentor '
                'of the same architectures?')


# ---------------------------------------------------------------- helpers
def build_noisy_teacher_student(
        segmentor: dict,
        noise: Optional[dict]) -> Tuple[nn.Module, nn.Module]:
    """A student with RML's model noise and a frozen teacher copy of it.

    The teacher is copied after the noise is added, so both have the same
    parameters and buffers for the EMA; the copy's dropout and stochastic
    depth only act in training mode, and teachers are held in eval mode.
    """
    student = MODELS.build(segmentor)
    if noise is not None:
        apply_model_noise(student, **noise)
    return freeze(copy.deepcopy(student)), student


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


def classifier_in_channels(decode_head: nn.Module) -> int:
    """Channels of the decoder feature entering ``conv_seg`` (what
    :func:`forward_logits` captures), the prototypes' dimension.

    ``conv_seg`` is mmseg's 1x1 Conv2d or any classifier module with an int
    ``in_channels`` (e.g. DeepLabV2Head's summed atrous convolutions).
    """
    conv_seg = getattr(decode_head, 'conv_seg', None)
    in_channels = getattr(conv_seg, 'in_channels', None)
    if not isinstance(conv_seg, nn.Module) or isinstance(
            in_channels, bool) or not isinstance(in_channels, int):
        raise TypeError(
            f'{type(decode_head).__name__} has no conv_seg with an int '
            '`in_channels`; the prototype rectifier cannot read its '
            'feature channels')
    return in_channels


def student_rep_head_cfg(cfg: dict, student: nn.Module, index: int) -> dict:
    """``rep_head`` for one student: ``in_channels`` defaults to the
    channels of that student's classifier input, and must match them."""
    channels = classifier_in_channels(student.decode_head)
    cfg = dict(cfg)
    cfg.setdefault('in_channels', channels)
    if cfg['in_channels'] != channels:
        raise ValueError(
            f"rep_head in_channels={cfg['in_channels']!r} does not match "
            f'student{index}, whose decoder feature has {channels} channels; '
            'leave in_channels out to read it from each student')
    return cfg


def build_rectifier(cfg: Optional[dict], teacher: nn.Module,
                    ignore_index: int) -> Optional[nn.Module]:
    """A rectifier in ``teacher``'s decoder feature space, or None."""
    if cfg is None:
        return None
    derived = [key for key in ('num_classes', 'feat_channels') if key in cfg]
    if derived:
        raise ValueError(
            f'rectifier {derived[0]}={cfg[derived[0]]!r} must not be set: '
            "it is read from each teacher's decode head")
    head = teacher.decode_head
    cfg = dict(
        cfg,
        num_classes=teacher.num_classes,
        feat_channels=classifier_in_channels(head))
    cfg.setdefault('align_corners', head.align_corners)
    cfg.setdefault('ignore_index', ignore_index)
    return MODELS.build(cfg)


def check_loss_weight(name: str, value) -> float:
    """A loss weight must be a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, Real) \
            or not value >= 0:
        raise ValueError(
            f'{name} must be a non-negative number, got {value!r}')
    return float(value)


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


def mutual_learning_losses(student_logits: Tensor, own: Tuple[Tensor, Tensor],
                           peer: Tuple[Tensor, Tensor], ignore_index: int,
                           prefix: str,
                           class_weight: Optional[Tensor] = None
                           ) -> Dict[str, Tensor]:
    """One student's unsupervised terms of RML Eq. 5.

    The student is trained with cross-entropy against the hard pseudo-labels
    of its own teacher and of its peer's teacher, each with its weight.

    Args:
        student_logits: (B, C, H, W) logits on the (mixed) strong view.
        own: ``(labels, weight)`` of the student's own teacher: int64
            (B, H, W) labels and a scalar (number or 0-dim tensor) weight.
        peer: ``(labels, weight)`` of the other student's teacher.
        ignore_index: Label of pixels without a pseudo-label.
        prefix: Prefix of the keys, e.g. ``'unsup1_'``.
        class_weight: Optional (C,) weight of each pseudo-label class.

    Returns:
        ``{prefix}own_loss_ce`` and ``{prefix}peer_loss_ce``.
    """
    return {
        f'{prefix}{name}_loss_ce':
        pseudo_label_cross_entropy(student_logits, labels, ignore_index,
                                   class_weight) * weight
        for name, (labels, weight) in (('own', own), ('peer', peer))
    }


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


_WRAPPER_PREFIX = re.compile(r'^module\.')


def strip_wrapper_prefix(state: dict) -> dict:
    """Drop the ``module.`` prefix DDP-wrapped models save."""
    return {
        _WRAPPER_PREFIX.sub('', key): value
        for key, value in state.items()
    }


def stage2_state_dict(state: dict,
                      teacher_student_names: Sequence[Tuple[str, str]],
                      kept_prefixes: Sequence[str] = ()) -> dict:
    """Initial state of RML's stage 2 from a stage-1 state dict.

    RML trains in two stages; the second starts both the students and the
    teachers from the first stage's teachers. Every ``<teacher>.k`` tensor
    becomes ``<teacher>.k`` and ``<student>.k``; stage-1 students are
    dropped. Tensors under ``kept_prefixes`` (e.g. the rectifiers, whose
    prototypes live in the teachers' feature spaces) are kept as they are.

    Args:
        state: Stage-1 state dict (wrapper keys, no ``module.``).
        teacher_student_names: ``(teacher, student)`` attribute pairs.
        kept_prefixes: Attribute names whose tensors are carried over.

    Returns:
        A new state dict; tensors are shared with ``state``, not copied.
    """
    result = {}
    for teacher, student in teacher_student_names:
        prefix = f'{teacher}.'
        weights = {
            key[len(prefix):]: value
            for key, value in state.items() if key.startswith(prefix)
        }
        if not weights:
            raise KeyError(
                f'the stage-1 checkpoint has no {teacher!r} weights (keys '
                f'starting with {prefix!r}); its keys start with e.g. '
                f'{sorted({k.split(".")[0] for k in state})[:5]}')
        for name in (teacher, student):
            result.update({f'{name}.{key}': v for key, v in weights.items()})
    for name in kept_prefixes:
        kept = {k: v for k, v in state.items() if k.startswith(f'{name}.')}
        if not kept:
            raise KeyError(
                f'the stage-1 checkpoint has no {name!r} state; set '
                'stage2_init.load_rectifiers=False to start with empty '
                'prototypes')
        result.update(kept)
    return result
