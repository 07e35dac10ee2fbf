"""Running mmseg segmentors for semi-supervised training: logits and the
decoder features at the classifier's input (or another decode-head
module's), the teacher step's chain (rectify, align, select), and the masks
of a padded batch."""
from contextlib import contextmanager
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmseg.utils import SampleList, add_prefix
from .class_share_monitor import ClassShareMonitor


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode: how a teacher is held."""
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module


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


def classifier_in_channels(decode_head: nn.Module) -> int:
    """Channels of the decoder feature entering ``conv_seg`` (what
    :func:`forward_logits` captures): the prototypes' and representation
    head's input dimension.

    ``conv_seg`` is mmseg's 1x1 Conv2d or any classifier module with an int
    ``in_channels`` (e.g. DeepLabV2Head's summed atrous convolutions).
    """
    conv_seg = getattr(decode_head, 'conv_seg', None)
    in_channels = getattr(conv_seg, 'in_channels', None)
    if not isinstance(conv_seg, nn.Module) or isinstance(
            in_channels, bool) or not isinstance(in_channels, int):
        raise TypeError(
            f'{type(decode_head).__name__} has no conv_seg with an int '
            '`in_channels`; the decoder feature channels cannot be read')
    return in_channels


def decode_loss_class_weight(segmentor: nn.Module) -> Optional[List[float]]:
    """The ``class_weight`` of the segmentor's decode-head loss (the first
    loss that has one, for a list of losses), or None when unweighted."""
    losses = segmentor.decode_head.loss_decode
    if not isinstance(losses, nn.ModuleList):
        losses = [losses]
    for loss in losses:
        weight = getattr(loss, 'class_weight', None)
        if weight is not None:
            return weight
    return None


def feature_module(decode_head: nn.Module,
                   source: Optional[str] = None) -> nn.Module:
    """The module whose input is the feature ``source`` names.

    ``source`` is a submodule name of the decode head (a dotted path, e.g.
    ``'sep_bottleneck'`` for DeepLabV3+'s fusion of ASPP and low-level
    features), or None for the classifier input
    (:func:`classifier_input_module`).
    """
    if source is None:
        return classifier_input_module(decode_head)
    if isinstance(source, str) and source:
        try:
            return decode_head.get_submodule(source)
        except AttributeError:
            pass
    children = [name for name, _ in decode_head.named_children()]
    raise ValueError(
        f'feature_source={source!r} names no submodule of '
        f'{type(decode_head).__name__} (its modules: {children}); name the '
        'decode-head module whose input is the feature, or leave it None '
        'for the classifier input')


@contextmanager
def capture_inputs(decode_head: nn.Module,
                   sources: Sequence[Optional[str]]) -> Iterator[List[list]]:
    """Record the input of each module ``sources`` names
    (:func:`feature_module`) during the head's forward.

    Yields one list per source that holds, after the forward, the captured
    (B, D, h, w) feature(s).
    """
    captured: List[list] = [[] for _ in sources]
    handles = []

    def hook_into(store: list):
        return lambda module, args: store.append(args[0])

    try:
        for source, store in zip(sources, captured):
            handles.append(
                feature_module(decode_head,
                               source).register_forward_pre_hook(
                                   hook_into(store)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def decode_with_inputs(head: nn.Module, feats: List[Tensor],
                       sources: Sequence[Optional[str]]
                       ) -> Tuple[Tensor, List[Tensor]]:
    """Run a decode head once; return its logits and the input of each
    module ``sources`` names (None: the classifier), in order."""
    with capture_inputs(head, sources) as captured:
        logits = head(feats)
    for source, store in zip(sources, captured):
        if not store:
            called = 'its classifier (cls_seg)' if source is None \
                else f'its {source!r} module'
            raise RuntimeError(
                f'{type(head).__name__}.forward did not call {called}; its '
                'decoder features cannot be captured')
    return logits, [store[-1] for store in captured]


def decode_with_features(head: nn.Module,
                         feats: List[Tensor],
                         source: Optional[str] = None
                         ) -> Tuple[Tensor, Tensor]:
    """Run a decode head; return its logits and its classifier input (or
    the input of the module ``source`` names)."""
    logits, (features, ) = decode_with_inputs(head, feats, [source])
    return logits, features


def forward_with_inputs(segmentor: nn.Module, inputs: Tensor,
                        sources: Sequence[Optional[str]]
                        ) -> Tuple[Tensor, List[Tensor]]:
    """Logits at input resolution and the decoder features ``sources``
    names (:func:`decode_with_inputs`), from one forward.

    Unlike ``predict`` this keeps padding, flips and the network's input
    size, so pseudo-labels line up pixel for pixel with the strong view.
    """
    feats = segmentor.extract_feat(inputs)
    head = segmentor.decode_head
    logits, features = decode_with_inputs(head, feats, sources)
    logits = F.interpolate(
        logits,
        size=inputs.shape[2:],
        mode='bilinear',
        align_corners=getattr(head, 'align_corners', False))
    return logits, features


def forward_logits(segmentor: nn.Module,
                   inputs: Tensor,
                   with_features: bool = False,
                   source: Optional[str] = None
                   ) -> Tuple[Tensor, Optional[Tensor]]:
    """Logits at input resolution, and optionally the decoder feature (the
    classifier input, or the input of the module ``source`` names)."""
    logits, features = forward_with_inputs(
        segmentor, inputs, [source] if with_features else [])
    return logits, (features[0] if with_features else None)


def segmentor_loss_with_features(
        segmentor: nn.Module,
        inputs: Tensor,
        data_samples: SampleList,
        source: Optional[str] = None) -> Tuple[dict, Tensor, Tensor]:
    """``EncoderDecoder.loss`` that also returns the decoder's outputs.

    Returns the same losses (``decode.*``, ``aux*``), the decode head's raw
    logits and the feature that entered its classifier (or the module
    ``source`` names), from one forward.
    """
    feats = segmentor.extract_feat(inputs)
    head = segmentor.decode_head
    seg_logits, features = decode_with_features(head, feats, source)
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
                            monitor: Optional[ClassShareMonitor] = None,
                            labeled: Optional[Tuple[Tensor, Tensor]] = None):
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
    result's classes against the raw arg-max. ``labeled``: the same
    teacher's classifier input on the labeled batch and its (B, H, W)
    ground truth, which the rectifier's update adds to the prototypes
    (RML Eq. 10, ``labeled_prototypes``).
    """
    raw = probs
    changed = None
    if rectifier is not None:
        probs, changed = rectifier(raw, feats, valid)
        rectifier.update(feats, raw, valid, *(labeled or (None, None)))
    if class_balance is not None:
        probs = class_balance(probs, valid)
    pseudo = pseudo_labeler(probs, valid, progress)
    if rectifier is not None:
        pseudo.rectified_ratio = changed
    if monitor is not None:
        monitor.update_pseudo(raw, pseudo)
    return pseudo


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
