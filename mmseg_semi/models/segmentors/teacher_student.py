"""One student, its EMA teacher, and the components that act on the
teacher's outputs (not registered; the segmentors hold one or two)."""
import copy
from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ...utils.arg_checks import check_bool
from ..pseudo_labelers import PseudoLabels
from ..utils.class_balance_functional import remove_class_weights
from ..utils.class_share_monitor import ClassShareMonitor
from ..utils.contrastive_functional import resize_pixel_maps
from ..utils.cutmix import paste_from, resize_mask
from ..utils.model_noise import apply_model_noise
from ..utils.segmentor_forward import (classifier_in_channels,
                                       classifier_input_module,
                                       decode_loss_class_weight,
                                       feature_module, forward_logits,
                                       forward_with_inputs, freeze,
                                       rectified_pseudo_labels,
                                       segmentor_loss_with_features,
                                       stack_gt_labels)

#: Attribute of each of a pair's modules in its segmentor, by role; ``{}``
#: is the pair's suffix ('' for a mean teacher, '1'/'2' for RML). The
#: segmentor registers the modules under these names, so checkpoints keep
#: the keys users' checkpoints and mmseg's tools know (``teacher.*``,
#: ``student1.*``, ``rectifier2.*``...). Groups are registered group by
#: group over the pairs (see :meth:`SemiBaseSegmentor.register_pairs`).
ROLE_GROUPS = (
    (('teacher', 'teacher{}'), ('student', 'student{}')),
    (('rectifier', 'rectifier{}'), ),
    (('class_balance', 'class_balance{}'),
     ('class_monitor', 'class_monitor{}')),
    (('teacher_rep_head', 'teacher{}_rep_head'),
     ('student_rep_head', 'student{}_rep_head'),
     ('contrastive_loss', 'contrastive_loss{}')),
)


class TeacherOutput(NamedTuple):
    """A teacher's step on the weak view."""
    #: float32 (B, C, H, W) teacher softmax (without the supervised class
    #: weights when the pair removes them).
    probs: Tensor
    #: The labeler's result on the rectified, aligned softmax.
    pseudo: PseudoLabels
    #: (B, D, h, w) input of the representation head when the pair has
    #: one (U2PL), else None.
    feats: Optional[Tensor]
    #: The teacher's softmax and representation-head input on the labeled
    #: batch when the step ran the teacher on it (the rectifier's labeled
    #: prototypes) and the pair has a contrastive term, which reuses them;
    #: else None.
    labeled: Optional[Tuple[Tensor, Tensor]] = None


class TeacherStudent:
    """A student segmentor, its EMA teacher and their components.

    Owns building the pair (the student from any mmseg segmentor config,
    optional model noise, the teacher as a frozen copy), and the components
    whose sizes come from the student: a prototype rectifier
    (``num_classes``, ``feat_channels``), a class-balance component and a
    class-share monitor (``num_classes``), U2PL's representation heads
    (``in_channels``) and contrastive loss (``num_classes``). A config may
    give these values; they must then equal the student's.

    Its steps are the ones both segmentors need: :meth:`supervised_loss`,
    :meth:`pseudo_label` (the teacher step), :meth:`student_logits` and
    :meth:`contrastive_term`. It is not an ``nn.Module``: the segmentor
    registers the modules under its own attribute names (``ROLE_GROUPS``).

    Args:
        segmentor: Config of the student (any mmseg ``EncoderDecoder``).
        pseudo_labeler: The (stateless, shared) pseudo-labeler module.
        name: Suffix of the pair's attribute names and log keys.
        noise: Optional ``apply_model_noise`` arguments (RML's noisy
            students); the teacher is copied after the noise is added.
        remove_class_weights: Divide the teacher's softmax by the class
            weights ``c`` of the student's supervised loss, raised to the
            training progress ``t / T``, before anything else
            (:func:`remove_class_weights`); nothing to do without weights.
        rectifier: Optional ``PrototypeRectifier`` config.
        class_balance: Optional class-balance config
            (``DistributionAlignment``).
        rep_head: Optional ``RepresentationHead`` config (U2PL). Its
            optional ``feature_source`` key (popped before building) names
            the student decode-head module whose input the head reads, e.g.
            ``'sep_bottleneck'`` for DeepLabV3+'s fusion of ASPP and
            low-level features, as in U2PL's released decoder; the config
            must then give ``in_channels``. Without it the head reads the
            classifier input, whose channels are read from the student.
        contrastive_loss: Optional ``U2PLContrastiveLoss`` config; goes with
            ``rep_head``.
    """

    def __init__(self,
                 segmentor: dict,
                 pseudo_labeler: nn.Module,
                 name: str = '',
                 noise: Optional[dict] = None,
                 remove_class_weights: bool = True) -> None:
        self.name = name
        self.remove_class_weights = check_bool('remove_class_weights',
                                               remove_class_weights)
        # (weights list, device) -> tensor: one host-to-device copy per
        # change of the weights, not one per step.
        self._class_weight_cache = (None, None, None)
        # t / T of the current step (set by pseudo_label, reused by
        # teacher_on_labeled in the same step).
        self.progress_fraction = 0.0
        self.pseudo_labeler = pseudo_labeler
        self.student = MODELS.build(segmentor)
        if noise is not None:
            apply_model_noise(self.student, **noise)
        self.teacher = freeze(copy.deepcopy(self.student))
        self.rectifier = self.class_balance = self.class_monitor = None
        self.teacher_rep_head = self.student_rep_head = None
        self.contrastive_loss = None
        # Decode-head module whose input the representation head reads
        # (None: the classifier's).
        self.rep_source: Optional[str] = None

    def build_components(self,
                         rectifier: Optional[dict] = None,
                         class_balance: Optional[dict] = None,
                         rep_head: Optional[dict] = None,
                         contrastive_loss: Optional[dict] = None) -> None:
        """Build the components, sized from the student (separate from
        ``__init__`` so the segmentor builds every network first)."""
        head = self.student.decode_head
        num_classes = head.num_classes
        ignore_index = self.pseudo_labeler.ignore_index
        student = f'student{self.name}'
        if rectifier is not None:
            rectifier = derived_cfg(
                rectifier, 'rectifier', student, num_classes=num_classes,
                feat_channels=classifier_in_channels(head))
            self.rectifier = MODELS.build(
                dict(dict(align_corners=head.align_corners,
                          ignore_index=ignore_index), **rectifier))
        if class_balance is not None:
            self.class_balance = MODELS.build(
                derived_cfg(class_balance, 'class_balance', student,
                            num_classes=num_classes))
        self.class_monitor = ClassShareMonitor(num_classes, ignore_index)
        if (rep_head is None) != (contrastive_loss is None):
            raise ValueError(
                'rep_head and contrastive_loss go together (U2PL): got '
                f'rep_head={rep_head!r}, '
                f'contrastive_loss={contrastive_loss!r}')
        if rep_head is not None:
            rep_head = dict(rep_head)
            source = rep_head.pop('feature_source', None)
            if source is None:
                # The head runs on the classifier input: fail at build time
                # if the decode head does not expose it.
                classifier_input_module(head)
                rep_head = derived_cfg(
                    rep_head, 'rep_head', student,
                    in_channels=classifier_in_channels(head))
            else:
                feature_module(head, source)  # fails on an unknown name
                if 'in_channels' not in rep_head:
                    raise ValueError(
                        f'rep_head reads the input of {student}\'s '
                        f'{type(head).__name__}.{source} '
                        f'(feature_source={source!r}): give its channels '
                        'as rep_head in_channels')
            self.rep_source = source
            self.student_rep_head = MODELS.build(rep_head)
            self.teacher_rep_head = freeze(
                copy.deepcopy(self.student_rep_head))
            self.contrastive_loss = MODELS.build(
                derived_cfg(contrastive_loss, 'contrastive_loss', student,
                            num_classes=num_classes))

    # ------------------------------------------------------------ structure
    @property
    def with_contrastive(self) -> bool:
        return self.contrastive_loss is not None

    def ema_pairs(self):
        """(teacher, student) modules that the EMA hook averages."""
        pairs = [(self.teacher, self.student)]
        if self.with_contrastive:
            pairs.append((self.teacher_rep_head, self.student_rep_head))
        return pairs

    @torch.no_grad()
    def copy_student_to_teacher(self) -> None:
        """Make the teacher (and its representation head) the student."""
        for teacher, student in self.ema_pairs():
            teacher.load_state_dict(student.state_dict())

    # ---------------------------------------------------------------- steps
    def supervised_loss(self, inputs: Tensor, data_samples: SampleList
                        ) -> Tuple[dict, Optional[Tensor]]:
        """The student's mmseg losses on the labeled batch, and the
        representation head's input when the contrastive term needs it
        (same forward)."""
        if not self.with_contrastive:
            return self.student.loss(inputs, data_samples), None
        losses, _, feats = segmentor_loss_with_features(
            self.student, inputs, data_samples, self.rep_source)
        return losses, feats

    @torch.no_grad()
    def pseudo_label(self,
                     weak: Tensor,
                     valid: Tensor,
                     progress: Tuple[int, int],
                     update_state: bool = True,
                     labeled: Optional[Tuple[Tensor, SampleList]] = None
                     ) -> TeacherOutput:
        """The teacher step: the teacher's softmax on the weak view,
        rectified, aligned and turned into pseudo-labels
        (:func:`rectified_pseudo_labels`).

        ``labeled`` is the labeled batch ``(inputs, data_samples)``: when
        the rectifier has ``labeled_prototypes`` (RML Eq. 10), the teacher
        also runs on it and its features, with the ground truth, update the
        prototypes together with the weak view's (one update).

        ``update_state=False`` (analysis tools) works on throw-away copies
        of the rectifier and the class-balance component and counts
        nothing, so the model's state is left as it was.
        """
        rectifier, class_balance, monitor = (self.rectifier,
                                             self.class_balance,
                                             self.class_monitor)
        if not update_state:
            rectifier, class_balance = copy.deepcopy(
                (rectifier, class_balance))
            monitor = None
        # One forward gives the rectifier its classifier input and the
        # representation head its own input.
        sources = [None] if rectifier is not None else []
        if self.with_contrastive:
            sources.append(self.rep_source)
        logits, feats = forward_with_inputs(self.teacher, weak, sources)
        self.progress_fraction = min(max(progress[0] / progress[1], 0.0),
                                     1.0)
        probs = self.teacher_posterior(logits)
        prototype_labeled, teacher_labeled = self.teacher_for_prototypes(
            rectifier, labeled)
        pseudo = rectified_pseudo_labels(
            self.pseudo_labeler, rectifier, probs,
            feats[0] if rectifier is not None else None, valid, progress,
            class_balance, monitor, prototype_labeled)
        return TeacherOutput(probs, pseudo,
                             feats[-1] if self.with_contrastive else None,
                             teacher_labeled)

    @torch.no_grad()
    def teacher_for_prototypes(
            self, rectifier: Optional[nn.Module],
            labeled: Optional[Tuple[Tensor, SampleList]]
    ) -> Tuple[Optional[Tuple[Tensor, Tensor]],
               Optional[Tuple[Tensor, Tensor]]]:
        """The teacher on the labeled batch for the rectifier's labeled
        prototypes, or ``(None, None)`` when it has none to update.

        One forward (after :meth:`pseudo_label` has set the progress)
        gives ``(classifier input, ground truth)`` for the rectifier and,
        when the pair has a contrastive term, the ``(softmax,
        representation-head input)`` that :meth:`contrastive_term` would
        otherwise compute with a second forward (:meth:`teacher_on_labeled`).
        """
        if labeled is None or rectifier is None \
                or not getattr(rectifier, 'labeled_prototypes', False):
            return None, None
        inputs, data_samples = labeled
        sources = [None]
        if self.with_contrastive:
            sources.append(self.rep_source)
        logits, feats = forward_with_inputs(self.teacher, inputs, sources)
        teacher_labeled = None
        if self.with_contrastive:
            teacher_labeled = (self.teacher_posterior(logits), feats[-1])
        return (feats[0], stack_gt_labels(data_samples)), teacher_labeled

    def teacher_posterior(self, logits: Tensor) -> Tensor:
        """float32 softmax of the teacher's logits, divided by the
        supervised loss's class weights to the power ``t / T`` when the pair
        removes them.

        Early on, the weights' prior stays: a weak teacher's unweighted
        posterior is mostly the dominant class (on CCP 1/8 a mean teacher
        with the weights removed from the start labelled 1.3-1.4x the
        labeled share as background and under 0.3x of every other class
        until iteration 350). By the end it is gone: a trained teacher's
        weighted arg-max over-labels the up-weighted classes 2-4x.
        """
        probs = logits.float().softmax(dim=1)
        weight = decode_loss_class_weight(self.student) \
            if self.remove_class_weights else None
        if weight is None:
            return probs
        cached_list, device, tensor = self._class_weight_cache
        if cached_list is not weight or device != probs.device:
            tensor = torch.as_tensor(weight, dtype=torch.float32,
                                     device=probs.device)
            self._class_weight_cache = (weight, probs.device, tensor)
        return remove_class_weights(probs, tensor, self.progress_fraction)

    def student_logits(self, strong: Tensor
                       ) -> Tuple[Tensor, Optional[Tensor]]:
        """The student's logits on the strong view (input resolution) and,
        for the contrastive term, the representation head's input."""
        return forward_logits(self.student, strong, self.with_contrastive,
                              self.rep_source)

    @torch.no_grad()
    def teacher_on_labeled(self, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        """The teacher's softmax and the representation head's input on the
        labeled batch (U2PL's labeled positives and negatives come from the
        teacher)."""
        logits, feats = forward_logits(self.teacher, inputs,
                                       with_features=True,
                                       source=self.rep_source)
        return self.teacher_posterior(logits), feats

    def contrastive_term(self, labeled_inputs: Tensor,
                         labeled_samples: SampleList, student_feat_l: Tensor,
                         student_feat_u: Tensor, teacher_feat_u: Tensor,
                         mixed_maps: Tuple[Tensor, Tensor, Tensor],
                         cutmix_mask: Optional[Tuple[Tensor, Tensor]],
                         teacher_labeled: Optional[Tuple[Tensor,
                                                         Tensor]] = None
                         ) -> Tensor:
        """U2PL's pixel contrastive loss of the student (Sec. 3.3).

        Anchors are the student's representations of the labeled batch and
        of the (mixed) strong view; positives and the negatives pushed into
        the loss's memory bank come from the teacher's representations of
        the labeled batch (a teacher forward here, unless the teacher step
        ran it: ``teacher_labeled``) and of the weak view. The
        teacher saw the weak view unmixed, so its representations are moved
        with the CutMix boxes of the strong view (``cutmix_mask``:
        ``(box_mask, perm)``), at representation resolution.

        Args:
            labeled_inputs, labeled_samples: The labeled batch.
            student_feat_l: Student decoder feature (the representation
                head's input) on the labeled batch.
            student_feat_u: Student decoder feature on the mixed strong
                view.
            teacher_feat_u: Teacher decoder feature on the weak view.
            mixed_maps: The teacher's mixed ``(labels, unreliable, probs)``
                on the strong view (Eq. 15's negatives come from the
                unreliable pixels).
            cutmix_mask: ``(box_mask, perm)`` of the CutMix step, or None.
            teacher_labeled: The teacher's ``(softmax, representation-head
                input)`` on the labeled batch when the teacher step already
                computed them (``TeacherOutput.labeled``); None runs
                :meth:`teacher_on_labeled`.
        """
        labels_u, unreliable_u, probs_u = mixed_maps
        if teacher_labeled is None:
            teacher_labeled = self.teacher_on_labeled(labeled_inputs)
        probs_l, teacher_feat_l = teacher_labeled
        with torch.no_grad():
            teacher_rep_l = self.teacher_rep_head(teacher_feat_l)
            teacher_rep_u = self.teacher_rep_head(teacher_feat_u)
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
        student_rep = self.student_rep_head(
            torch.cat([student_feat_l, student_feat_u]))
        teacher_rep = torch.cat([teacher_rep_l, teacher_rep_u])
        gt_labels = stack_gt_labels(labeled_samples)
        num_l, num_u = gt_labels.shape[0], labels_u.shape[0]
        # Each half is brought to the representation size before it is
        # joined, so the full-resolution probabilities are never copied.
        size = student_rep.shape[2:]
        labels_l, probs_l, unreliable_l = resize_pixel_maps(
            size, gt_labels, probs_l,
            # Ground truth is never unreliable.
            torch.zeros_like(gt_labels, dtype=torch.bool))
        labels_u, probs_u, unreliable_u = resize_pixel_maps(
            size, labels_u, probs_u, unreliable_u)
        return self.contrastive_loss(
            student_reps=student_rep,
            teacher_reps=teacher_rep,
            labels=torch.cat([labels_l, labels_u]),
            teacher_probs=torch.cat([probs_l, probs_u]),
            unreliable=torch.cat([unreliable_l, unreliable_u]),
            is_labeled=torch.arange(num_l + num_u, device=labels_u.device) <
            num_l)


def derived_cfg(cfg: dict, key: str, student: str, **derived) -> dict:
    """``cfg`` with the values read from the student filled in; a value the
    config gives must equal the student's (named ``student`` in errors)."""
    cfg = dict(cfg)
    for name, value in derived.items():
        given = cfg.setdefault(name, value)
        if given != value:
            raise ValueError(
                f'{key} {name}={given!r} does not match {student}, whose '
                f'value is {value!r}; leave {name} out of {key} to read it '
                'from each student')
    return cfg
