"""`import mmseg_semi` registers every component into mmseg's registries,
and each registered name resolves to the class defined in this package."""
import importlib

import pytest
from mmseg.registry import (DATASETS, HOOKS, LOOPS, MODELS, OPTIM_WRAPPERS,
                            TRANSFORMS)

import mmseg_semi  # noqa: F401

COMPONENTS = {
    DATASETS: ['CamVidDataset', 'CCPDataset', 'UnlabeledImageFolderDataset'],
    TRANSFORMS: [
        'MultiBranch', 'RandomColorJitter',
        'RandomGaussianBlur', 'RandAugmentPhotometric',
        'LoadCheckedAnnotations'
    ],
    MODELS: [
        'EfficientNetLite', 'MultiBranchDataPreprocessor',
        'MeanTeacherSegmentor', 'DualStudentSegmentor',
        'EntropyPseudoLabeler', 'ConfidencePseudoLabeler',
        'DistributionAlignment',
        'PrototypeRectifier', 'RepresentationHead', 'U2PLContrastiveLoss',
        'ClassWeightedCrossEntropyLoss',
        'ClassMemoryBank', 'DeepLabV2Head'
    ],
    HOOKS: [
        'EMATeacherHook', 'ClassCollapseGuardHook', 'LabeledClassWeightHook'
    ],
    OPTIM_WRAPPERS: ['FiniteLossOptimWrapper', 'AnyDeviceAmpOptimWrapper'],
    LOOPS: ['SemiIterBasedTrainLoop', 'TeacherStudentValLoop'],
}


@pytest.mark.parametrize(
    'registry,name',
    [(registry, name) for registry, names in COMPONENTS.items()
     for name in names],
    ids=lambda value: value if isinstance(value, str) else value.name)
def test_component_is_registered_in_mmseg_scope(registry, name):
    cls = registry.get(name)
    assert cls is not None, f'{name} is not in mmseg {registry.name}'
    assert cls.__module__.startswith('mmseg_semi.'), cls.__module__
    # Registered in mmseg's own registry (scope 'mmseg'), so configs with
    # default_scope='mmseg' find it without a scope prefix.
    assert name in registry.module_dict
    assert registry.scope == 'mmseg'


def test_every_registered_class_of_the_package_is_listed():
    """A new registered class must be added to COMPONENTS (and tested)."""
    listed = {name for names in COMPONENTS.values() for name in names}
    found = set()
    for registry in COMPONENTS:
        for name, cls in registry.module_dict.items():
            if cls.__module__.startswith('mmseg_semi.'):
                found.add(name)
    assert found == listed


def test_one_registered_class_per_file():
    modules = {}
    for registry in COMPONENTS:
        for name, cls in registry.module_dict.items():
            if cls.__module__.startswith('mmseg_semi.'):
                modules.setdefault(cls.__module__, []).append(name)
    crowded = {m: n for m, n in modules.items() if len(n) > 1}
    assert not crowded, crowded
    for module in modules:
        importlib.import_module(module)
