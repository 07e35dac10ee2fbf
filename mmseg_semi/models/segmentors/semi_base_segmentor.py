"""Machinery shared by the semi-supervised segmentors (not registered)."""
import copy
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import PixelData
from torch import Tensor, nn

from mmseg.registry import MODELS
from mmseg.utils import SampleList, add_prefix
from ..utils.class_balance_functional import class_pixel_counts
from ..utils.class_share_monitor import ClassShareMonitor


class SemiBaseSegmentor(BaseModel):
    """Base for wrappers that train mmseg segmentors on unlabeled data.

    A subclass owns one or more (teacher, student) pairs of plain mmseg
    segmentors, named by :attr:`teacher_student_names`. This base provides
    what every such wrapper needs:

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
            convolutions. Subclasses apply it at the end of their
            ``__init__`` (:meth:`apply_memory_format`), before mmengine
            wraps the model for DDP, so DDP's gradient buckets take the
            parameters' layout.
        init_cfg: mmengine init config.
    """

    #: (teacher attribute, student attribute) pairs, set by subclasses.
    teacher_student_names: Tuple[Tuple[str, str], ...] = ()

    def __init__(self,
                 data_preprocessor: Optional[dict],
                 unsup_start_iter: int = 0,
                 predict_on: str = 'teacher',
                 channels_last: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not isinstance(channels_last, bool):
            raise ValueError(
                f'channels_last must be True or False, got {channels_last!r}')
        self.channels_last = channels_last
        if not isinstance(unsup_start_iter, int) or unsup_start_iter < 0:
            raise ValueError('unsup_start_iter must be a non-negative int, '
                             f'got {unsup_start_iter!r}')
        self.unsup_start_iter = unsup_start_iter
        # Through the setter: a wrong name (e.g. tools/test.py --predict-on)
        # fails here, not with an AttributeError at the first prediction.
        self.predict_on = predict_on
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

        Called once every network is built. Later in-place initialisation
        and ``load_state_dict`` copy into the tensors and keep the layout;
        checkpoints load into models of either layout.
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

    @staticmethod
    def build_teacher_student(segmentor: dict) -> Tuple[nn.Module, nn.Module]:
        """Build a student from an mmseg config and a teacher copy of it."""
        student = MODELS.build(segmentor)
        teacher = copy.deepcopy(student)
        freeze(teacher)
        return teacher, student

    def teacher_student_pairs(self) -> List[Tuple[nn.Module, nn.Module]]:
        """(teacher, student) modules, for the EMA hook."""
        return [(getattr(self, t), getattr(self, s))
                for t, s in self.teacher_student_names]

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
        if name not in self.predict_choices():
            raise ValueError(f'predict_on={name!r} is not one of '
                             f'{self.predict_choices()}')
        self._predict_on = name

    def predict_choices(self) -> List[str]:
        return self.segmentor_names

    def predict_model(self) -> nn.Module:
        return getattr(self, self.predict_on)

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
    @staticmethod
    def build_class_balance(cfg: Optional[dict],
                            num_classes: int) -> Optional[nn.Module]:
        """Build a class-balance component (e.g. ``DistributionAlignment``)
        for a teacher of ``num_classes`` classes; None keeps the teacher's
        probabilities as they are."""
        if cfg is None:
            return None
        return MODELS.build(dict(cfg, num_classes=num_classes))

    def class_share_monitors(self) -> Dict[str, ClassShareMonitor]:
        """Monitors of the pseudo-labels' classes, by log prefix."""
        return {}

    def observe_labeled_classes(self, data_samples: SampleList,
                                balances: Sequence[Optional[nn.Module]]
                                ) -> None:
        """Count the labeled batch's ground-truth classes into every
        class-share monitor and class-balance component."""
        receivers = list(self.class_share_monitors().values()) + \
            [balance for balance in balances if balance is not None]
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
        raise NotImplementedError

    def predict(self, inputs: Tensor,
                data_samples: Optional[SampleList] = None) -> SampleList:
        return self.predict_model().predict(inputs, data_samples)

    # ------------------------------------------------- checkpoint loading
    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        expand_plain_segmentor_state(state_dict, prefix, self.segmentor_names)
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode: how a teacher is held."""
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


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
def classifier_input_module(decode_head: nn.Module) -> nn.Module:
    """The module whose input is the decoder feature before the classifier.

    mmseg's ``BaseDecodeHead.cls_seg`` applies ``dropout`` (when set) and then
    ``conv_seg``; the feature entering that step is the head's pixel
    representation, whatever the head's architecture.
    """
    dropout = getattr(decode_head, 'dropout', None)
    if isinstance(dropout, nn.Module):
        return dropout
    conv_seg = getattr(decode_head, 'conv_seg', None)
    if isinstance(conv_seg, nn.Module):
        return conv_seg
    raise AttributeError(
        f'{type(decode_head).__name__} exposes no decoder features: it has '
        'neither `dropout` nor `conv_seg` (mmseg BaseDecodeHead.cls_seg), so '
        'prototypes or a contrastive loss cannot be attached to it')


@contextmanager
def capture_classifier_input(decode_head: nn.Module) -> Iterator[list]:
    """Record the decoder feature that enters the classifier.

    Yields a list that holds, after the head's forward, the captured
    (B, D, h, w) feature.
    """
    captured: list = []

    def hook(module, args):
        captured.append(args[0])

    handle = classifier_input_module(decode_head).register_forward_pre_hook(
        hook)
    try:
        yield captured
    finally:
        handle.remove()


def decode_with_features(head: nn.Module,
                         feats: List[Tensor]) -> Tuple[Tensor, Tensor]:
    """Run a decode head; return its logits and its classifier input."""
    with capture_classifier_input(head) as captured:
        logits = head(feats)
    if not captured:
        raise RuntimeError(
            f'{type(head).__name__}.forward did not call its classifier '
            '(cls_seg); its decoder features cannot be captured')
    return logits, captured[-1]


def forward_logits(segmentor: nn.Module,
                   inputs: Tensor,
                   with_features: bool = False
                   ) -> Tuple[Tensor, Optional[Tensor]]:
    """Logits at input resolution, and optionally the decoder feature.

    Unlike ``predict`` this keeps padding, flips and the network's input
    size, so pseudo-labels line up pixel for pixel with the strong view.
    """
    feats = segmentor.extract_feat(inputs)
    head = segmentor.decode_head
    if with_features:
        logits, features = decode_with_features(head, feats)
    else:
        logits, features = head(feats), None
    logits = F.interpolate(
        logits,
        size=inputs.shape[2:],
        mode='bilinear',
        align_corners=getattr(head, 'align_corners', False))
    return logits, features


def segmentor_loss_with_features(
        segmentor: nn.Module, inputs: Tensor,
        data_samples: SampleList) -> Tuple[dict, Tensor, Tensor]:
    """``EncoderDecoder.loss`` that also returns the decoder's outputs.

    Returns the same losses (``decode.*``, ``aux*``), the decode head's raw
    logits and the feature that entered its classifier, from one forward.
    """
    feats = segmentor.extract_feat(inputs)
    head = segmentor.decode_head
    seg_logits, features = decode_with_features(head, feats)
    losses = add_prefix(head.loss_by_feat(seg_logits, data_samples), 'decode')
    if getattr(segmentor, 'with_auxiliary_head', False):
        losses.update(
            segmentor._auxiliary_head_forward_train(feats, data_samples))
    return losses, seg_logits, features


def rectified_pseudo_labels(pseudo_labeler: nn.Module,
                            rectifier: Optional[nn.Module], probs: Tensor,
                            feats: Optional[Tensor], valid: Tensor,
                            progress: Tuple[int, int],
                            class_balance: Optional[nn.Module] = None,
                            monitor: Optional[ClassShareMonitor] = None):
    """Pseudo-label a teacher's softmax: rectify, align, select.

    The rectifier judges the batch with prototypes from earlier batches and
    is updated from the teacher's softmax, not the rectified one, so
    prototypes never vote on the labels they produce. ``class_balance``
    (e.g. ``DistributionAlignment``) then aligns the class distribution of
    the probabilities that become the labels with the labeled data's:
    aligning before the rectifier let its prototype weights shift the
    classes again (on CCP 1/8 the rectified labels over-labelled two
    classes 2.3-2.6x, docs/benchmarks/class_balance.md). ``rectified_ratio``
    of the result is the fraction of valid pixels whose arg-max the
    rectifier changed (None without a rectifier). ``monitor`` counts the
    result's classes against the raw arg-max.
    """
    raw = probs
    changed = None
    if rectifier is not None:
        probs, changed = rectifier(raw, feats, valid)
        rectifier.update(feats, raw, valid)
    if class_balance is not None:
        probs = class_balance(probs, valid)
    pseudo = pseudo_labeler(probs, valid, progress)
    if rectifier is not None:
        pseudo.rectified_ratio = changed
    if monitor is not None:
        monitor.update_pseudo(raw, pseudo)
    return pseudo


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


def valid_pixel_mask(data_samples: SampleList, height: int, width: int,
                     device: torch.device) -> Tensor:
    """bool (B, H, W): True inside each image, False on batch padding.

    ``stack_batch`` pads at the bottom and right, so the image occupies
    ``[0, img_h) x [0, img_w)`` of the padded batch.
    """
    sizes = torch.tensor([list(s.img_shape[:2]) for s in data_samples],
                         device=device)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    return (rows < sizes[:, 0].view(-1, 1, 1)) & \
        (cols < sizes[:, 1].view(-1, 1, 1))


def stack_gt_labels(data_samples: SampleList) -> Tensor:
    """(B, H, W) int64 ground truth from padded ``gt_sem_seg``."""
    return torch.stack([s.gt_sem_seg.data[0] for s in data_samples]).long()


def attach_pseudo_labels(data_samples: SampleList, labels: Tensor) -> None:
    """Store pseudo-labels as ``gt_sem_seg`` (e.g. for visualisation)."""
    for sample, label in zip(data_samples, labels):
        sample.gt_sem_seg = PixelData(data=label.unsqueeze(0))


def check_class_weight_length(class_weight: Optional[Tensor],
                              segmentor: nn.Module, key: str) -> None:
    """Raise ValueError unless ``class_weight`` has one entry per class."""
    if class_weight is None:
        return
    num_classes = segmentor.decode_head.num_classes
    if class_weight.numel() != num_classes:
        raise ValueError(f'{key} has {class_weight.numel()} entries but the '
                         f'segmentor predicts {num_classes} classes')
