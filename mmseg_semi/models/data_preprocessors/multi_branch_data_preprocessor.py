from typing import Any, Dict, List, Optional

import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmengine.structures import PixelData
from torch import Tensor

from mmseg.registry import MODELS


@MODELS.register_module()
class MultiBranchDataPreprocessor(BaseDataPreprocessor):
    """Applies one mmseg data preprocessor to every branch of a semi batch.

    The semi-supervised train loop yields
    ``dict(labeled=batch, unlabeled=batch)`` where the unlabeled batch comes
    from :class:`MultiBranch` and holds ``inputs``/``data_samples`` dicts keyed
    by view name (``weak``, ``strong``). Each branch is normalised and padded
    by the wrapped preprocessor (e.g. ``SegDataPreProcessor``) and the result
    is flattened to ``dict(inputs={branch: Tensor}, data_samples={branch:
    list})`` with branches ``labeled``, ``weak``, ``strong``.

    All branches of a training batch leave with one spatial size: a branch
    padded smaller than another (e.g. ``size_divisor`` padding of labeled
    crops that came out smaller than the crop size, after a down-scaling
    ``RandomResize``) is padded further at the bottom and right, images with
    the wrapped preprocessor's ``pad_val`` and labels with its
    ``seg_pad_val``, and its samples' ``pad_shape`` updated. U2PL's
    contrastive loss pools labeled and unlabeled pixels and needs this.

    Validation and test batches (plain mmseg batches) pass straight through
    the wrapped preprocessor, so the same model evaluates like any mmseg
    segmentor.

    Args:
        data_preprocessor: Config of the per-branch preprocessor.
    """

    def __init__(self, data_preprocessor: dict) -> None:
        super().__init__()
        if not isinstance(data_preprocessor, dict):
            raise TypeError('MultiBranchDataPreprocessor: data_preprocessor '
                            'must be a config dict, got '
                            f'{type(data_preprocessor).__name__}')
        self.data_preprocessor = MODELS.build(data_preprocessor)

    def forward(self, data: dict, training: bool = False) -> Dict[str, Any]:
        if not is_semi_batch(data):
            return self.data_preprocessor(data, training)
        inputs, data_samples = {}, {}
        labeled = self.data_preprocessor(data['labeled'], training)
        inputs['labeled'] = labeled['inputs']
        data_samples['labeled'] = labeled['data_samples']
        unlabeled = data['unlabeled']
        views = unlabeled['inputs']
        if not isinstance(views, dict):
            raise TypeError(
                'The unlabeled batch must come from a MultiBranch transform '
                "(inputs keyed by view, e.g. 'weak' and 'strong'); got "
                f'inputs of type {type(views).__name__}')
        for view, view_inputs in views.items():
            if view == 'labeled':
                raise KeyError("An unlabeled view must not be named 'labeled'")
            packed = self.data_preprocessor(
                dict(
                    inputs=view_inputs,
                    data_samples=unlabeled['data_samples'][view]), training)
            inputs[view] = packed['inputs']
            data_samples[view] = packed['data_samples']
        height = max(batch.shape[-2] for batch in inputs.values())
        width = max(batch.shape[-1] for batch in inputs.values())
        for branch in inputs:
            inputs[branch] = pad_branch(
                inputs[branch], data_samples[branch], (height, width),
                getattr(self.data_preprocessor, 'pad_val', 0),
                getattr(self.data_preprocessor, 'seg_pad_val', 255))
        return dict(inputs=inputs, data_samples=data_samples)


def pad_branch(inputs: Tensor, data_samples: List, size: tuple,
               pad_val: float, seg_pad_val: int) -> Tensor:
    """Pad a (B, C, H, W) branch and its samples' labels to ``size``.

    Bottom/right padding, as mmseg's ``stack_batch``; labels get
    ``seg_pad_val`` so the padding is ignored, never a class.
    """
    pad_h = size[0] - inputs.shape[-2]
    pad_w = size[1] - inputs.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return inputs
    for sample in data_samples:
        if 'gt_sem_seg' in sample:
            # A new PixelData: the old one pins its fields to the old size.
            label = sample.gt_sem_seg
            sample.gt_sem_seg = PixelData(
                metainfo=label.metainfo,
                data=F.pad(label.data, (0, pad_w, 0, pad_h),
                           value=seg_pad_val))
        sample.set_metainfo(dict(pad_shape=tuple(size)))
    return F.pad(inputs, (0, pad_w, 0, pad_h), value=pad_val)


def is_semi_batch(data: Optional[dict]) -> bool:
    """Whether ``data`` is a ``dict(labeled=..., unlabeled=...)`` batch."""
    return isinstance(data, dict) and 'labeled' in data \
        and 'unlabeled' in data
