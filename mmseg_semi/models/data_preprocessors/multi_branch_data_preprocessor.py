from typing import Any, Dict, Optional

from mmengine.model import BaseDataPreprocessor

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
        return dict(inputs=inputs, data_samples=data_samples)


def is_semi_batch(data: Optional[dict]) -> bool:
    """Whether ``data`` is a ``dict(labeled=..., unlabeled=...)`` batch."""
    return isinstance(data, dict) and 'labeled' in data \
        and 'unlabeled' in data
