"""Run one sample through several pipelines to get aligned views."""
import copy

from mmcv.transforms import BaseTransform, Compose
from mmseg.registry import TRANSFORMS


def build_branch_pipeline(name, pipeline):
    """Build one branch's transforms into a ``Compose``.

    Config dicts are built with mmseg's ``TRANSFORMS`` registry, which also
    finds mmcv's transforms, so a branch works whatever the default scope.

    Args:
        name (str): Branch name, used in error messages.
        pipeline (list[dict | callable]): Transform configs or transforms.

    Returns:
        Compose: The built pipeline.
    """
    if not isinstance(pipeline, (list, tuple)) or len(pipeline) == 0:
        raise TypeError(f"MultiBranch branch '{name}' must be a non-empty "
                        f'list of transforms, got {pipeline!r}')
    transforms = []
    for transform in pipeline:
        if isinstance(transform, dict):
            transform = TRANSFORMS.build(transform)
        elif not callable(transform):
            raise TypeError(f"MultiBranch branch '{name}' holds "
                            f'{transform!r}, which is neither a transform '
                            'config nor a callable')
        transforms.append(transform)
    return Compose(transforms)


@TRANSFORMS.register_module()
class MultiBranch(BaseTransform):
    """Produce several packed views of one sample, e.g. weak and strong.

    Put the geometric transforms (resize, crop, flip) before this transform
    so every view shares one geometry; each branch then adds only its own
    photometric ops. Each branch gets a deep copy of ``results``, so
    branches cannot affect each other or the caller's dict, and must end in
    a packing transform such as mmseg's ``PackSegInputs``.

    The output collates with mmengine's ``pseudo_collate`` into
    ``{'inputs': {name: [...]}, 'data_samples': {name: [...]}}``. Each data
    sample records its branch name in ``metainfo['branch']``.

    Example:
        >>> MultiBranch(branches=dict(
        ...     weak=[dict(type='PackSegInputs')],
        ...     strong=[dict(type='RandomColorJitter'),
        ...             dict(type='PackSegInputs')]))

    Args:
        branches (dict[str, list[dict]]): Branch name to the transforms of
            that branch, in order.
    """

    def __init__(self, branches):
        if not isinstance(branches, dict) or len(branches) == 0:
            raise TypeError('MultiBranch branches must be a non-empty dict '
                            f'of name -> transform list, got {branches!r}')
        self.branches = {
            name: build_branch_pipeline(name, pipeline)
            for name, pipeline in branches.items()
        }

    def transform(self, results):
        """Run every branch on its own copy of ``results``.

        Args:
            results (dict): Results after the shared (geometric) transforms.

        Returns:
            dict | None: ``dict(inputs={name: ...}, data_samples={name:
            ...})``, or None when any branch rejected the sample.
        """
        inputs, data_samples = {}, {}
        for name, pipeline in self.branches.items():
            packed = pipeline(copy.deepcopy(results))
            if packed is None:
                return None
            inputs[name], data_samples[name] = unpack_branch(name, packed)
        return dict(inputs=inputs, data_samples=data_samples)

    def __repr__(self):
        branches = ', '.join(f'{name}={pipeline!r}'
                             for name, pipeline in self.branches.items())
        return f'{type(self).__name__}({branches})'


def unpack_branch(name, packed):
    """Take a branch's packed inputs and data sample, tagging the branch.

    Args:
        name (str): Branch name.
        packed (dict): Output of the branch pipeline.

    Returns:
        tuple: ``(inputs, data_sample)`` of the branch.
    """
    missing = [key for key in ('inputs', 'data_samples') if key not in packed]
    if missing:
        raise KeyError(f"MultiBranch branch '{name}' output lacks {missing}; "
                       'end the branch with a packing transform such as '
                       f"PackSegInputs (output keys: {sorted(packed)})")
    data_sample = packed['data_samples']
    if not hasattr(data_sample, 'set_metainfo'):
        raise TypeError(f"MultiBranch branch '{name}' packed data_samples of "
                        f'type {type(data_sample).__name__}, expected a data '
                        'element such as SegDataSample')
    data_sample.set_metainfo(dict(branch=name))
    return packed['inputs'], data_sample
