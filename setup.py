"""Install mmseg-semi, an MMSegmentation 1.x plugin for semi-supervised segmentation.

The heavy dependencies (torch, mmcv with compiled ops) are installed by
``tools/setup_env.sh`` because mmcv has to be built from source against the
torch that is already present; ``install_requires`` only lists what pip can
resolve without pulling a CUDA build of torch.
"""
from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open('mmseg_semi/version.py') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(path):
    with open(path) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
        ]


setup(
    name='mmseg-semi',
    version=read_version(),
    description='Semi-supervised semantic segmentation (U2PL, RML) for '
    'MMSegmentation 1.x',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'tests': read_requirements('requirements/tests.txt'),
        # mmpretrain needs torchvision; there is no CPU torchvision build for
        # torch 2.13 on this project's machines, so it is never required.
        'mmpretrain': ['mmpretrain>=1.0.0'],
    },
    zip_safe=False,
)
