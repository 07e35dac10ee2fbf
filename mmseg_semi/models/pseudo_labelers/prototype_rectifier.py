"""RML's prototype-based self-rectification of teacher probabilities."""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor, nn

from ...utils.arg_checks import check_bool, check_int, check_number
from ..utils.pseudo_label_functional import class_argmax
from ..utils.prototype_functional import (argmax_change_fraction,
                                          class_feature_means,
                                          ema_update_class_prior,
                                          ema_update_prototypes,
                                          prototype_class_weights,
                                          rectify_probabilities)


@MODELS.register_module()
class PrototypeRectifier(nn.Module):
    """Class prototypes of one teacher and the rectification they drive.

    RML (Zhang et al., 2021, Sec. 4.2): the teacher's probabilities ``p`` are
    re-weighted by a class-wise confidence ``w`` that measures how close the
    pixel's decoder feature is to each class prototype (Eq. 9), giving
    ``p~_k ∝ w_k p_k`` (Eq. 6); the prototypes are moving averages of the
    batch class centroids (Eq. 10-11) over the unlabeled pixels, grouped by
    the teacher's arg-max, and, with ``labeled_prototypes`` (the paper's
    Eq. 10), the labeled pixels, grouped by their ground truth. Use one
    rectifier per teacher: prototypes live in that teacher's feature space.

    Call order per iteration (the segmentor's job)::

        rectified, changed = rectifier(probs, feats, valid_mask)
        rectifier.update(feats, probs, valid_mask,
                         labeled_feats, labeled_labels)

    ``labeled_feats`` are the same teacher's decoder features on the
    labeled batch. Labeled and unlabeled pixels make one batch centroid per
    class, so one update is one all-reduce and one moving-average step.

    Rectifying *before* updating means a batch is rectified with prototypes
    estimated from earlier batches only, so a pixel's own (possibly wrong)
    arg-max never pulls the prototype that then judges it; with
    ``momentum = 0.9999`` the difference to updating first is otherwise
    negligible. The very first batch is therefore passed through unchanged.
    ``update`` is meant for the raw teacher probabilities: feeding the
    rectified ones would let the prototypes vote on their own training
    labels.

    ``pi`` in Eq. 9 is implemented as a class-frequency prior: a moving
    average (same ``momentum``) of the fraction of the pixels behind the
    prototypes (the teacher's arg-max on unlabeled pixels, the ground truth
    on labeled ones) in each class. Like a prototype, a class's prior
    starts at its frequency in the first batch that has it, not at 0 (see
    :func:`ema_update_class_prior`). With it, ``w`` is the posterior of a
    nearest-prototype classifier. It is not the teacher's probability
    ``p_k``: that would count ``p`` twice in ``w_k p_k``. The prior is always
    tracked (so checkpoints have the same keys either way) and used only
    when ``use_prior`` is True. It is off by default: on unlabeled pixels it
    is the teacher's own arg-max shares, so it feeds back on the teacher's
    predictions (a class the teacher stops predicting gets a lower prior,
    hence fewer rectified pixels, hence a lower prior), and ProDA, whose
    prototypes RML takes, has none.

    State (persistent buffers, saved in checkpoints and restored on resume):
    ``prototypes`` (C, D) float32, ``prototype_initialised`` (C,) bool and
    ``class_prior`` (C,) float32. Under DDP the per-class feature sums and
    counts are all-reduced in one collective before the moving average, so
    every rank holds identical prototypes.

    Args:
        num_classes: Number of classes ``C``.
        feat_channels: Channels ``D`` of the decoder features (the input of
            the classifier ``conv_seg``).
        momentum: ``lambda`` of Eq. 10-11, the weight of the old prototype.
        use_prior: Add ``log pi`` to the logits of Eq. 9 (default False).
        labeled_prototypes: Let the labeled batch's pixels, with their
            ground truth, feed the prototypes with the unlabeled ones
            (Eq. 10's centroids over labeled and unlabeled images; default
            True). The segmentor then runs the teacher on the labeled batch
            (once per step and teacher, shared with U2PL's contrastive term
            when both are on). False: unlabeled pixels only.
        temperature: Divides the distances in Eq. 9; 1 is the plain
            definition. Larger values soften ``w`` when feature distances are
            large.
        ignore_index: Ground-truth label value excluded from the prototypes
            (labeled pixels, :meth:`update_from_labels`) and written by
            :meth:`hard_labels` on invalid pixels.
        align_corners: ``align_corners`` of the bilinear resizes; match the
            decode head's setting.
    """

    def __init__(self,
                 num_classes: int,
                 feat_channels: int,
                 momentum: float = 0.9999,
                 use_prior: bool = False,
                 labeled_prototypes: bool = True,
                 temperature: float = 1.0,
                 ignore_index: int = 255,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.num_classes = check_int('num_classes', num_classes, minimum=1)
        self.feat_channels = check_int('feat_channels', feat_channels,
                                       minimum=1)
        self.momentum = float(check_number('momentum', momentum, 0, 1))
        self.use_prior = check_bool('use_prior', use_prior)
        self.labeled_prototypes = check_bool('labeled_prototypes',
                                             labeled_prototypes)
        self.temperature = float(
            check_number('temperature', temperature, low=0, low_open=True))
        self.ignore_index = check_int('ignore_index', ignore_index)
        self.align_corners = align_corners
        self.register_buffer('prototypes',
                             torch.zeros(num_classes, feat_channels))
        self.register_buffer('prototype_initialised',
                             torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer('class_prior', torch.zeros(num_classes))

    @torch.no_grad()
    def forward(self,
                probs: Tensor,
                feats: Tensor,
                valid_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Rectify teacher probabilities with the current prototypes.

        ``w`` is computed at the feature resolution and resized bilinearly
        to the probabilities' size: decoder features are at 1/4-1/8 of the
        image resolution, and resizing the C-channel weights is far cheaper
        than resizing the D-channel features (D >> C typically). Bilinear
        weights are convex, so the resized ``w`` still sums to 1 over
        classes and stays exactly 0 for classes without a prototype.

        Args:
            probs: (B, C, H, W) teacher softmax ``p``.
            feats: (B, D, h, w) teacher decoder features ``f``.
            valid_mask: Optional bool (B, H, W), True on real image content.
                Only ``changed_fraction`` uses it; every pixel is rectified.

        Returns:
            ``(rectified_probs, changed_fraction)``: float32 (B, C, H, W)
            probabilities and a float32 0-dim tensor, the fraction of valid
            pixels whose arg-max the rectification changed.
        """
        self._check_probs_and_feats(probs, feats)
        self._check_valid_mask(valid_mask, probs)
        probs = probs.detach().float()
        weights = prototype_class_weights(
            feats.detach(),
            self.prototypes,
            self.prototype_initialised,
            log_prior=self._log_prior(),
            temperature=self.temperature)
        if weights.shape[2:] != probs.shape[2:]:
            weights = F.interpolate(
                weights,
                size=probs.shape[2:],
                mode='bilinear',
                align_corners=self.align_corners)
        rectified = rectify_probabilities(probs, weights)
        changed_fraction = argmax_change_fraction(probs, rectified,
                                                  valid_mask)
        return rectified, changed_fraction

    @torch.no_grad()
    def update(self,
               feats: Tensor,
               probs: Tensor,
               valid_mask: Optional[Tensor] = None,
               labeled_feats: Optional[Tensor] = None,
               labeled_labels: Optional[Tensor] = None) -> None:
        """Moving-average update from the teacher's arg-max (Eq. 10-11) and,
        with ``labeled_prototypes``, the labeled batch's ground truth.

        ``probs`` is resized bilinearly to the feature size before the
        arg-max (so the label reflects the probabilities around the feature
        pixel) and ``valid_mask`` with nearest neighbour (it is a mask).
        The labeled pixels' per-class sums and counts are added to the
        unlabeled ones before the single all-reduce and moving-average step
        (one centroid per class over both sets, Eq. 10).

        Args:
            feats: (B, D, h, w) teacher decoder features on the weak view.
            probs: (B, C, H, W) teacher softmax (raw, not rectified).
            valid_mask: Optional bool (B, H, W); False pixels (padding,
                ignored regions) do not contribute.
            labeled_feats: Optional (B', D, h', w') teacher decoder features
                on the labeled batch; ignored unless ``labeled_prototypes``.
            labeled_labels: int64 (B', H', W') ground truth of the labeled
                batch, given with ``labeled_feats``; see
                :meth:`update_from_labels`.
        """
        self._check_probs_and_feats(probs, feats)
        self._check_valid_mask(valid_mask, probs)
        if (labeled_feats is None) != (labeled_labels is None):
            raise ValueError(
                'labeled_feats and labeled_labels go together: got '
                f'labeled_feats={_describe(labeled_feats)} and '
                f'labeled_labels={_describe(labeled_labels)}')
        feat_size = feats.shape[2:]
        probs = probs.detach().float()
        if probs.shape[2:] != feat_size:
            probs = F.interpolate(
                probs,
                size=feat_size,
                mode='bilinear',
                align_corners=self.align_corners)
        labels = class_argmax(probs)
        valid = None
        if valid_mask is not None:
            valid = self._resize_nearest(valid_mask, feat_size).bool()
        sums, counts = class_feature_means(feats.detach(), labels,
                                           self.num_classes, valid)
        if labeled_feats is not None and self.labeled_prototypes:
            labeled_sums, labeled_counts = self._label_statistics(
                labeled_feats, labeled_labels)
            sums, counts = sums + labeled_sums, counts + labeled_counts
        self._apply_statistics(sums, counts)

    @torch.no_grad()
    def update_from_labels(self, feats: Tensor, labels: Tensor) -> None:
        """Moving-average update from given labels, e.g. ground truth.

        Args:
            feats: (B, D, h, w) teacher decoder features.
            labels: int64 (B, H, W) class indices; ``ignore_index`` and other
                out-of-range values do not contribute. Resized with nearest
                neighbour to the feature size.
        """
        self._apply_statistics(*self._label_statistics(feats, labels))

    def hard_labels(self,
                    rectified_probs: Tensor,
                    valid_mask: Optional[Tensor] = None) -> Tensor:
        """Hard pseudo-labels: arg-max, ``ignore_index`` on invalid pixels.

        Args:
            rectified_probs: (B, C, H, W) output of :meth:`forward`.
            valid_mask: Optional bool (B, H, W).

        Returns:
            int64 (B, H, W) labels.
        """
        labels = class_argmax(rectified_probs)
        if valid_mask is None:
            return labels
        self._check_valid_mask(valid_mask, rectified_probs)
        return labels.masked_fill(~valid_mask, self.ignore_index)

    def _label_statistics(self, feats: Tensor,
                          labels: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-class feature sums and counts under given (B, H, W) labels,
        resized with nearest neighbour to the feature size."""
        self._check_feats(feats)
        if not isinstance(labels, Tensor) or labels.dim() != 3 \
                or labels.shape[0] != feats.shape[0] \
                or labels.dtype != torch.long:
            raise ValueError(
                f'labels must be an int64 (B, H, W) tensor with '
                f'B={feats.shape[0]}, got {_describe(labels)}')
        labels = self._resize_nearest(labels, feats.shape[2:])
        # Out-of-range labels (ignore_index included) are excluded by
        # class_feature_means; the explicit mask documents the intent.
        return class_feature_means(feats.detach(), labels, self.num_classes,
                                   labels != self.ignore_index)

    def _apply_statistics(self, sums: Tensor, counts: Tensor) -> None:
        """One moving-average step of the prototypes and the prior from a
        batch's per-class sums and counts (all-reduced first)."""
        sums, counts = self._all_reduce_class_statistics(sums, counts)
        batch_means = sums / counts.clamp_min(1.0).unsqueeze(1)
        prototypes, initialised = ema_update_prototypes(
            self.prototypes, self.prototype_initialised, batch_means,
            counts > 0, self.momentum)
        # The classes seen before this batch: the prior's per-class first
        # sighting is the prototypes'.
        class_prior = ema_update_class_prior(self.class_prior, counts,
                                             self.prototype_initialised,
                                             self.momentum)
        # In-place copies keep the buffers' identity (and device) for DDP
        # buffer broadcasting and for any references held elsewhere.
        self.prototypes.copy_(prototypes)
        self.prototype_initialised.copy_(initialised)
        self.class_prior.copy_(class_prior)

    @staticmethod
    def _all_reduce_class_statistics(sums: Tensor,
                                     counts: Tensor) -> Tuple[Tensor, Tensor]:
        """Sum the (C, D) sums and (C,) counts over ranks in one collective."""
        if not (dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return sums, counts
        packed = torch.cat([sums, counts.unsqueeze(1)], dim=1)
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        return packed[:, :-1], packed[:, -1]

    def _log_prior(self) -> Optional[Tensor]:
        if not self.use_prior:
            return None
        # Every initialised class has a positive prior in exact arithmetic;
        # the clamp only guards against float32 underflow after very long
        # absences. Uninitialised classes are masked out in Eq. 9 anyway.
        return self.class_prior.float().clamp_min(
            torch.finfo(torch.float32).tiny).log()

    @staticmethod
    def _resize_nearest(tensor: Tensor, size) -> Tensor:
        """Nearest-neighbour resize of a (B, H, W) mask or label map."""
        if tensor.shape[1:] == tuple(size):
            return tensor
        resized = F.interpolate(
            tensor[:, None].float(), size=tuple(size), mode='nearest')
        return resized[:, 0].to(tensor.dtype)

    def _check_feats(self, feats: Tensor) -> None:
        if not isinstance(feats, Tensor) or feats.dim() != 4 \
                or feats.shape[1] != self.feat_channels:
            shape = tuple(feats.shape) if isinstance(feats, Tensor) else None
            raise ValueError(
                f'feats must be a (B, {self.feat_channels}, h, w) tensor '
                f'(feat_channels={self.feat_channels}), got shape {shape}')
        if not torch.is_floating_point(feats):
            raise ValueError(
                f'feats must be a floating point tensor, got {feats.dtype}')

    def _check_probs_and_feats(self, probs: Tensor, feats: Tensor) -> None:
        self._check_feats(feats)
        if not isinstance(probs, Tensor) or probs.dim() != 4 \
                or probs.shape[1] != self.num_classes \
                or probs.shape[0] != feats.shape[0]:
            shape = tuple(probs.shape) if isinstance(probs, Tensor) else None
            raise ValueError(
                f'probs must be a ({feats.shape[0]}, {self.num_classes}, H, '
                f'W) tensor (num_classes={self.num_classes}, batch of '
                f'feats), got shape {shape}')
        if not torch.is_floating_point(probs):
            raise ValueError(
                f'probs must be a floating point tensor, got {probs.dtype}')

    @staticmethod
    def _check_valid_mask(valid_mask: Optional[Tensor], probs: Tensor) -> None:
        if valid_mask is None:
            return
        expected = probs.shape[:1] + probs.shape[2:]
        if not isinstance(valid_mask, Tensor) \
                or valid_mask.dtype != torch.bool \
                or valid_mask.shape != expected:
            got = (valid_mask.dtype, tuple(valid_mask.shape)) \
                if isinstance(valid_mask, Tensor) else type(valid_mask)
            raise ValueError(
                f'valid_mask must be a bool tensor of shape '
                f'{tuple(expected)}, got {got}')

    def extra_repr(self) -> str:
        return (f'num_classes={self.num_classes}, '
                f'feat_channels={self.feat_channels}, '
                f'momentum={self.momentum}, use_prior={self.use_prior}, '
                f'labeled_prototypes={self.labeled_prototypes}, '
                f'temperature={self.temperature}')


def _describe(value) -> str:
    """A tensor's dtype and shape, or the value's type, for errors."""
    if isinstance(value, Tensor):
        return f'{value.dtype} {tuple(value.shape)}'
    return type(value).__name__
