"""The semi-supervised segmentors' base: a template training step over
one or more teacher-student pairs (not registered)."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from mmseg.utils import SampleList
from ...utils.arg_checks import (check_bool, check_choice, check_int,
                                 check_number)
from ..pseudo_labelers import PseudoLabels
from ..utils.class_balance_functional import class_pixel_counts
from ..utils.class_share_monitor import ClassShareMonitor
from ..utils.cutmix import mix_with_box_mask
from ..utils.segmentor_forward import stack_gt_labels, valid_pixel_mask
from .teacher_student import ROLE_GROUPS, TeacherStudent


class SemiBaseSegmentor(BaseModel):
    """Base for wrappers that train mmseg segmentors on unlabeled data.

    A subclass builds one or more :class:`TeacherStudent` pairs (a mean
    teacher one, RML two) and registers them (:meth:`register_pairs`). This
    base provides what every such wrapper needs:

    * the training step as a template (:meth:`loss`): each student's
      supervised loss; each teacher's pseudo-labels on the weak view
      (``TeacherStudent.pseudo_label``, which also runs the teacher on the
      labeled batch when its rectifier has labeled prototypes, RML
      Eq. 10); the strong view and every
      teacher's per-pixel maps CutMixed with one set of boxes; each
      student's logits on it; the pseudo-label losses, the only step a
      subclass must supply (:meth:`pseudo_label_losses`); the labelers'
      statistics; each pair's contrastive term when it has one;
    * each teacher starts as a copy of its student (:meth:`init_weights`);

    * teachers never get gradients and stay in eval mode even though
      mmengine's loop calls ``model.train()`` every iteration;
    * ``set_train_progress(t, T)``, called by :class:`SemiIterBasedTrainLoop`,
      so schedules (U2PL's alpha_t, supervised-only warm-up) follow training;
    * ``predict``/``tensor`` modes run the network named by ``predict_on``,
      so validation, testing and ``inference_model`` work as for mmseg;
    * a plain mmseg checkpoint (model zoo, ``load_from``) initialises every
      teacher and student;
    * helpers to run a segmentor and capture the decoder features that feed
      its classifier (for prototypes and contrastive heads).

    Args:
        data_preprocessor: Preprocessor config; by default a
            ``MultiBranchDataPreprocessor`` wrapping the student's own.
        cutmix: ``dict(prob=..., area_ratio_range=...,
            aspect_ratio_range=...)`` for batch CutMix of the strong view, or
            None to disable.
        sup_weight: Weight of the supervised losses.
        unsup_class_weight: Optional per-class weights of the pseudo-label
            cross-entropies; None, as in the papers, weighs classes alike.
        unsup_start_iter: Supervised-only warm-up: the unsupervised losses
            start at this iteration (the EMA hook copies students into
            teachers until then).
        predict_on: Name of the network used for prediction.
        channels_last: Hold every 4-D parameter and buffer (convolution
            kernels) in ``torch.channels_last`` memory format, so
            convolutions run in NHWC. A speed option with the same model:
            on the project's 2-core CPU, a DeepLabV3+ EfficientNet-Lite0
            training step took 30% less time (RML CamVid step 2.0 vs
            2.9 s); channels-last is also the fast layout of CUDA AMP
            convolutions. Applied when the pairs are registered, before
            mmengine wraps the model for DDP, so DDP's gradient buckets
            take the parameters' layout.
        init_cfg: mmengine init config.
        train_cfg, pretrained: Accepted as None only, so that mmseg's
            ``init_model``, which sets both on any model config (they are
            ``EncoderDecoder`` arguments), builds this wrapper; a
            network's own ones belong in its segmentor config
            (``train_cfg``, ``backbone.init_cfg``).
    """

    def __init__(self,
                 data_preprocessor: Optional[dict],
                 cutmix: Optional[dict] = dict(prob=1.0),
                 sup_weight: float = 1.0,
                 unsup_class_weight: Optional[Sequence[float]] = None,
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher',
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None) -> None:
        for key, value in (('train_cfg', train_cfg),
                           ('pretrained', pretrained)):
            if value is not None:
                raise ValueError(
                    f'{type(self).__name__}: model.{key}={value!r} would be '
                    'ignored; set it in the segmentor config(s) instead '
                    "(e.g. segmentor.train_cfg, segmentor.backbone.init_cfg)")
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.sup_weight = loss_weight('sup_weight', sup_weight)
        self.register_unsup_class_weight(unsup_class_weight)
        self.channels_last = check_bool('channels_last', channels_last)
        self.cutmix = dict(cutmix) if cutmix is not None else None
        #: The TeacherStudent pairs, in registration order (not modules: the
        #: segmentor holds their modules under their attribute names).
        self.pairs = []
        self.unsup_start_iter = check_int('unsup_start_iter',
                                          unsup_start_iter, minimum=0)
        # Checked by register_pairs, once the networks exist.
        self._predict_on = predict_on
        self.train_iter = 0
        self.max_iters = 1
        # Set by ClassCollapseGuardHook(pause_iters=...): no unsupervised
        # loss before this iteration.
        self.unsup_paused_until = 0

    def register_unsup_class_weight(
            self, class_weight: Optional[Sequence[float]]) -> None:
        """Keep the pseudo-label classes' loss weights as a buffer.

        A buffer follows the model to its device and dtype-free into
        checkpoints; None keeps the papers' unweighted cross-entropy.
        """
        if class_weight is None:
            self.unsup_class_weight = None
            return
        weight = torch.as_tensor(class_weight, dtype=torch.float32)
        if weight.dim() != 1 or not torch.isfinite(weight).all() \
                or (weight < 0).any():
            raise ValueError('unsup_class_weight must be a list of finite '
                             f'non-negative numbers, got {class_weight!r}')
        self.register_buffer('unsup_class_weight', weight, persistent=False)

    # ------------------------------------------------------------ structure
    def apply_memory_format(self) -> None:
        """Move 4-D parameters and buffers to channels-last if asked.

        Called by :meth:`register_pairs`, once every network is built.
        Later in-place initialisation and ``load_state_dict`` copy into the
        tensors and keep the layout; checkpoints load into models of either
        layout.
        """
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def build_multi_branch_preprocessor(
            data_preprocessor: Optional[dict], segmentor: dict) -> dict:
        """The segmentor's preprocessor, applied per branch.

        A plain mmseg preprocessor config (e.g. the top-level
        ``data_preprocessor`` that mmengine's runner hands to every model) is
        wrapped in a ``MultiBranchDataPreprocessor``.
        """
        if data_preprocessor is not None and data_preprocessor.get(
                'type') in ('MultiBranchDataPreprocessor',
                            'mmseg.MultiBranchDataPreprocessor'):
            return data_preprocessor
        inner = data_preprocessor or segmentor.get('data_preprocessor')
        if inner is None:
            raise KeyError(
                'Neither the semi-supervised model nor its segmentor config '
                'has a data_preprocessor; set segmentor.data_preprocessor '
                "(e.g. dict(type='SegDataPreProcessor', ...))")
        return dict(
            type='MultiBranchDataPreprocessor',
            data_preprocessor=copy.deepcopy(inner))

    def register_pairs(self, pairs: Sequence[TeacherStudent]) -> None:
        """Register the pairs' modules under their attribute names.

        Role group by role group over the pairs (the networks of every
        pair, then every rectifier, ...): registration order is the order
        in which mmengine initialises the modules, which draws random
        numbers, so it is kept as it was before the pairs existed.
        """
        self.pairs = list(pairs)
        for group in ROLE_GROUPS:
            for pair in self.pairs:
                for role, pattern in group:
                    setattr(self, pattern.format(pair.name),
                            getattr(pair, role))
        if self.unsup_class_weight is not None:
            num_classes = self.pairs[0].student.decode_head.num_classes
            if self.unsup_class_weight.numel() != num_classes:
                raise ValueError(
                    f'unsup_class_weight has '
                    f'{self.unsup_class_weight.numel()} entries but the '
                    f'segmentor predicts {num_classes} classes')
        # Checked once the pairs, hence the network names, exist: a wrong
        # name (e.g. tools/test.py --predict-on) fails here, not at the
        # first prediction.
        self.predict_on = self._predict_on
        self.apply_memory_format()

    @property
    def teacher_student_names(self) -> Tuple[Tuple[str, str], ...]:
        """(teacher, student) attribute names of the pairs."""
        return tuple((f'teacher{pair.name}', f'student{pair.name}')
                     for pair in self.pairs)

    @property
    def with_contrastive(self) -> bool:
        """Whether the students carry U2PL's contrastive term."""
        return any(pair.with_contrastive for pair in self.pairs)

    def pair_of(self, teacher_name: str):
        """The pair whose teacher is the attribute ``teacher_name``."""
        for pair in self.pairs:
            if f'teacher{pair.name}' == teacher_name:
                return pair
        raise ValueError(f'{teacher_name!r} is not one of the teachers '
                         f'{[t for t, _ in self.teacher_student_names]}')

    def teacher_student_pairs(self) -> List[Tuple[nn.Module, nn.Module]]:
        """(teacher, student) modules, for the EMA hook: the networks and
        the representation heads."""
        return [
            modules for pair in self.pairs for modules in pair.ema_pairs()
        ]

    def teachers(self) -> List[nn.Module]:
        return [teacher for teacher, _ in self.teacher_student_pairs()]

    @property
    def segmentor_names(self) -> List[str]:
        return [name for pair in self.teacher_student_names for name in pair]

    @property
    def predict_on(self) -> str:
        return self._predict_on

    @predict_on.setter
    def predict_on(self, name: str) -> None:
        self._predict_on = check_choice('predict_on', name,
                                        self.predict_choices())

    def predict_choices(self) -> List[str]:
        return self.segmentor_names

    def predict_model(self) -> nn.Module:
        return getattr(self, self.predict_on)

    @property
    def out_channels(self) -> int:
        """Channels of the predicted logits, as mmseg segmentors have
        (mmseg's ``SegTTAModel``, i.e. ``tools/test.py --tta``, reads it)."""
        return self.pairs[0].student.out_channels

    def train(self, mode: bool = True) -> 'SemiBaseSegmentor':
        super().train(mode)
        for teacher in self.teachers():
            teacher.eval()  # BN statistics and dropout stay frozen
        return self

    # ------------------------------------------------------------- schedule
    def set_train_progress(self, iteration: int, max_iters: int) -> None:
        """Called by the train loop before each step (t, T)."""
        self.train_iter = int(iteration)
        self.max_iters = max(int(max_iters), 1)

    @property
    def progress(self) -> Tuple[int, int]:
        return self.train_iter, self.max_iters

    @property
    def unsup_active(self) -> bool:
        return self.train_iter >= max(self.unsup_start_iter,
                                      self.unsup_paused_until)

    def pause_unsup(self, until_iter: int) -> None:
        """Train supervised-only until ``until_iter`` (the EMA teachers keep
        averaging the student)."""
        self.unsup_paused_until = max(self.unsup_paused_until,
                                      int(until_iter))

    # -------------------------------------------------------- class balance
    def class_share_monitors(self) -> Dict[str, ClassShareMonitor]:
        """Monitors of the pseudo-labels' classes, by log prefix."""
        if len(self.pairs) == 1:
            return {'': self.pairs[0].class_monitor}
        return {f'teacher{pair.name}/': pair.class_monitor
                for pair in self.pairs}

    def observe_labeled_classes(self, data_samples: SampleList) -> None:
        """Count the labeled batch's ground-truth classes into every
        class-share monitor and class-balance component."""
        receivers = [
            module for pair in self.pairs
            for module in (pair.class_monitor, pair.class_balance)
            if module is not None
        ]
        if not receivers:
            return
        # Ignored (255) and padded pixels are outside [0, C): not counted.
        counts = class_pixel_counts(
            stack_gt_labels(data_samples), receivers[0].num_classes)
        for receiver in receivers:
            receiver.update_labeled(counts)

    # -------------------------------------------------------------- forward
    def forward(self,
                inputs,
                data_samples=None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.predict_model()._forward(inputs, data_samples)
        raise RuntimeError(f'Invalid mode "{mode}". '
                           'Only supports loss, predict and tensor mode')

    def loss(self, inputs: Dict[str, Tensor],
             data_samples: Dict[str, SampleList]) -> dict:
        """The training step (see the class docstring); log keys are
        ``sup<name>_<mmseg key>``, the subclass's pseudo-label losses,
        ``unsup<name>_<statistic>`` and ``unsup<name>_loss_contrast``, with
        ``<name>`` the pair's suffix."""
        labeled, labeled_samples = inputs['labeled'], data_samples['labeled']
        self.observe_labeled_classes(labeled_samples)
        losses, student_feats_l = {}, []
        for pair in self.pairs:
            sup, feats = pair.supervised_loss(labeled, labeled_samples)
            losses.update(
                prefixed_losses(sup, f'sup{pair.name}_', self.sup_weight))
            student_feats_l.append(feats)
        if not self.unsup_active:
            return losses
        weak = inputs['weak']
        valid = valid_pixel_mask(data_samples['weak'], *weak.shape[2:],
                                 weak.device)
        teacher_outputs = [
            pair.pseudo_label(weak, valid, self.progress,
                              labeled=(labeled, labeled_samples))
            for pair in self.pairs
        ]
        pixel_maps = [output.pseudo.labels for output in teacher_outputs]
        for pair, output in zip(self.pairs, teacher_outputs):
            if pair.with_contrastive:
                pixel_maps += [output.pseudo.unreliable, output.pseudo.probs]
        strong, pixel_maps, cutmix_mask = mix_with_box_mask(
            self.cutmix, inputs['strong'], *pixel_maps)
        labels = pixel_maps[:len(self.pairs)]
        contrastive_maps = iter(pixel_maps[len(self.pairs):])
        student_outputs = [pair.student_logits(strong) for pair in self.pairs]
        losses.update(
            self.pseudo_label_losses(
                [logits for logits, _ in student_outputs], labels,
                [output.pseudo for output in teacher_outputs]))
        for pair, output in zip(self.pairs, teacher_outputs):
            losses.update(
                pseudo_label_stats(output.pseudo, f'unsup{pair.name}_'))
        losses.update(self.teacher_statistics(teacher_outputs, valid))
        for index, pair in enumerate(self.pairs):
            if not pair.with_contrastive:
                continue
            maps = (labels[index], next(contrastive_maps),
                    next(contrastive_maps))
            key = f'unsup{pair.name}_{pair.contrastive_loss.loss_name}'
            losses[key] = pair.contrastive_term(
                labeled, labeled_samples, student_feats_l[index],
                student_outputs[index][1], teacher_outputs[index].feats,
                maps, cutmix_mask, teacher_outputs[index].labeled)
        return losses

    def pseudo_label_losses(self, student_logits: List[Tensor],
                            labels: List[Tensor],
                            pseudos: List[PseudoLabels]) -> dict:
        """The losses of the students' logits on the mixed strong view
        against the mixed pseudo-labels (one entry per pair, in order); the
        method's own step."""
        raise NotImplementedError

    def teacher_statistics(self, teacher_outputs, valid: Tensor) -> dict:
        """Extra logged statistics of the teachers' outputs (none here)."""
        return {}

    def predict(self, inputs: Tensor,
                data_samples: Optional[SampleList] = None) -> SampleList:
        return self.predict_model().predict(inputs, data_samples)

    # ------------------------------------------------------ initialisation
    def init_weights(self) -> None:
        """Initialise, then make each teacher equal to its student.

        mmengine initialises students and teachers independently (random
        heads differ); the copy makes the first pseudo-labels come from the
        network the student is.
        """
        super().init_weights()
        for pair in self.pairs:
            pair.copy_student_to_teacher()

    # ------------------------------------------------- checkpoint loading
    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        expand_plain_segmentor_state(state_dict, prefix, self.segmentor_names)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)


def expand_plain_segmentor_state(state_dict: dict, prefix: str,
                                 names: Sequence[str]) -> None:
    """Map a plain mmseg state dict onto every named sub-segmentor, in place.

    A checkpoint whose keys all lack the wrapper's prefixes (``student.``,
    ``teacher.``...) is a plain segmentor checkpoint (model zoo, supervised
    run): each key ``k`` becomes ``<name>.k`` for every name, so one
    checkpoint initialises both teacher and student. Wrapper checkpoints are
    left untouched.
    """
    own = [k for k in state_dict if k.startswith(prefix)]
    if not own:
        return
    wrapper_prefixes = tuple(f'{prefix}{name}.' for name in names)
    if any(k.startswith(wrapper_prefixes) for k in own):
        return
    for key in own:
        value = state_dict.pop(key)
        rest = key[len(prefix):]
        for name in names:
            state_dict[f'{prefix}{name}.{rest}'] = value


# ------------------------------------------------------------------ helpers
def prefixed_losses(losses: dict, prefix: str, weight: float) -> dict:
    """``losses`` with ``prefix`` on every key; loss terms scaled by weight
    (mmengine sums the keys containing 'loss'; statistics are kept)."""
    return {
        f'{prefix}{key}': scale_if_loss(key, value, weight)
        for key, value in losses.items()
    }


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
    if pseudo.rectified_ratio is not None:
        stats[f'{prefix}rectified_ratio'] = pseudo.rectified_ratio
    return stats


def loss_weight(name: str, value) -> float:
    """A loss weight must be a non-negative number."""
    return float(check_number(name, value, low=0))
