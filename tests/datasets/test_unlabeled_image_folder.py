"""UnlabeledImageFolderDataset: every image of a folder, no split file, no
masks (docs/tutorials/your_own_dataset.md trains with it end to end)."""
import os
import os.path as osp

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image

import mmseg_semi  # noqa: F401
from mmseg.registry import DATASETS
from mmseg_semi.datasets import UnlabeledImageFolderDataset

init_default_scope('mmseg')

IMAGES = ('a.png', 'b.JPG', 'sub/c.jpeg', 'sub/deeper/d.png')
#: Files the dataset must skip: hidden, in a hidden folder, not an image.
DECOYS = ('.DS_Store', 'sub/._c.jpeg', '.ipynb_checkpoints/e.png',
          'notes.txt', 'sub/mask.npy')


def write_image(path, size=(24, 32)):
    os.makedirs(osp.dirname(path), exist_ok=True)
    pixels = np.random.RandomState(0).randint(0, 256, size + (3, ),
                                              dtype=np.uint8)
    fmt = 'JPEG' if path.lower().endswith(('.jpg', '.jpeg')) else 'PNG'
    Image.fromarray(pixels).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / 'photos'
    for name in IMAGES:
        write_image(str(root / name))
    for name in DECOYS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b'\x00')
    return tmp_path


def relative_paths(dataset, root):
    return [
        osp.relpath(dataset.get_data_info(i)['img_path'], str(root))
        for i in range(len(dataset))
    ]


def test_lists_every_image_sorted_skipping_hidden_files(folder):
    dataset = DATASETS.build(
        dict(type='UnlabeledImageFolderDataset', data_root=str(folder),
             data_prefix=dict(img_path='photos')))
    assert isinstance(dataset, UnlabeledImageFolderDataset)
    assert relative_paths(dataset, folder / 'photos') == sorted(IMAGES)
    assert all('seg_map_path' not in dataset.get_data_info(i)
               for i in range(len(dataset)))


def test_suffixes_and_recursion_select_files(folder):
    top_png = UnlabeledImageFolderDataset(
        img_suffix='.png', recursive=False,
        data_prefix=dict(img_path=str(folder / 'photos')))
    assert relative_paths(top_png, folder / 'photos') == ['a.png']
    jpegs = UnlabeledImageFolderDataset(
        img_suffix=['.JPG', '.jpeg'],
        data_prefix=dict(img_path=str(folder / 'photos')))
    assert relative_paths(jpegs, folder / 'photos') == ['b.JPG',
                                                        'sub/c.jpeg']


def test_unlabeled_pipeline_yields_two_views_without_masks(folder):
    dataset = UnlabeledImageFolderDataset(
        data_prefix=dict(img_path=str(folder / 'photos')),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='RandomCrop', crop_size=(16, 16), cat_max_ratio=1.0),
            dict(type='MultiBranch', branches=dict(
                weak=[dict(type='PackSegInputs')],
                strong=[dict(type='RandomGaussianBlur'),
                        dict(type='PackSegInputs')]))
        ])
    sample = dataset[0]
    assert sample['inputs']['weak'].shape == (3, 16, 16)
    assert sample['inputs']['strong'].shape == (3, 16, 16)
    for view in ('weak', 'strong'):
        assert 'gt_sem_seg' not in sample['data_samples'][view]


@pytest.mark.parametrize(
    'kwargs,error,match',
    [
        (dict(data_prefix=dict(img_path='missing')), FileNotFoundError,
         "img_path='.*missing' is not a folder"),
        (dict(data_prefix=dict(img_path='photos/sub/deeper'),
              img_suffix='.jpg'), ValueError,
         r"no image ending in \.jpg under img_path='.*deeper'"),
        (dict(data_prefix=dict(img_path='photos/sub'), recursive=False,
              img_suffix='.png'), ValueError,
         r'directly in \(recursive=False\)'),
        (dict(data_prefix=dict(img_path='photos'), ann_file='split.txt'),
         ValueError, "ann_file='.*split.txt'"),
        (dict(data_prefix=dict(img_path='photos', seg_map_path='masks')),
         ValueError, "seg_map_path='masks'"),
        (dict(data_prefix=dict(img_path='photos'), img_suffix=''),
         ValueError, "img_suffix must be a non-empty string.*''"),
        (dict(data_prefix=dict(img_path='photos'), img_suffix=['.png', 3]),
         ValueError, r"img_suffix .*\['.png', 3\]"),
        (dict(data_prefix=dict(img_path='photos'), recursive=1),
         ValueError, 'recursive must be True or False, got 1'),
    ])
def test_bad_arguments_are_named(folder, kwargs, error, match):
    with pytest.raises(error, match=match):
        UnlabeledImageFolderDataset(data_root=str(folder), **kwargs)
