"""Tests for tools/dataset_converters/make_semi_splits.py."""
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from helpers import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL_PATH = REPO_ROOT / 'tools' / 'dataset_converters' / 'make_semi_splits.py'
CAMVID_ROOT = Path(
    os.environ.get('MMSEG_SEMI_CAMVID_ROOT',
                   REPO_ROOT / '..' / 'shared' / 'data' / 'camvid'))


def load_tool():
    """Import the tool by path; tools/ is not a package."""
    return load_script(TOOL_PATH)


splits = load_tool()
SplitError = splits.SplitError

# Published U2PL labeled counts for 1/16, 1/8, 1/4, 1/2 (and CamVid 1/8, 1/4).
PUBLISHED_COUNTS = [
    (1464, '1/16', 92), (1464, '1/8', 183), (1464, '1/4', 366),
    (1464, '1/2', 732),
    (10582, '1/16', 662), (10582, '1/8', 1323), (10582, '1/4', 2646),
    (10582, '1/2', 5291),
    (2975, '1/16', 186), (2975, '1/8', 372), (2975, '1/4', 744),
    (2975, '1/2', 1488),
    (367, '1/8', 46), (367, '1/4', 92),
]
FRACTION_TAGS = {'1/16': '1-16', '1/8': '1-8', '1/4': '1-4', '1/2': '1-2'}
CITIES = ['aachen', 'bochum', 'zurich']


def voc_names(count):
    """Return ``count`` fake VOC-style names, e.g. ``2007_000000``."""
    return [f'2007_{index:06d}' for index in range(count)]


def make_voc_root(tmp_path, list_name, names):
    """Create a VOC2012 root whose ImageSets list ``list_name`` holds names."""
    root = tmp_path / 'VOC2012'
    list_dir = root / 'ImageSets' / 'Segmentation'
    list_dir.mkdir(parents=True)
    (list_dir / f'{list_name}.txt').write_text(''.join(
        f'{name}\n' for name in names))
    return root


def make_cityscapes_root(tmp_path, count, split='train'):
    """Create ``count`` empty leftImg8bit images spread over CITIES."""
    root = tmp_path / 'cityscapes'
    for index in range(count):
        city = CITIES[index % len(CITIES)]
        city_dir = root / 'leftImg8bit' / split / city
        city_dir.mkdir(parents=True, exist_ok=True)
        (city_dir / f'{city}_{index:06d}_000019_leftImg8bit.png').touch()
    return root


def read_lines(path):
    """Return the lines of a split file (which must end in a newline)."""
    text = Path(path).read_text()
    assert text == '' or text.endswith('\n')
    return text.splitlines()


def run_cli(capsys, *argv):
    """Run main(argv); return (exit code, stdout, stderr)."""
    code = splits.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_is_split_of(pool, labeled, unlabeled):
    """Labeled and unlabeled are sorted, disjoint, and cover the pool."""
    assert labeled == sorted(labeled) and unlabeled == sorted(unlabeled)
    assert not set(labeled) & set(unlabeled)
    assert sorted(labeled + unlabeled) == sorted(pool)


# --- fractions and counts -------------------------------------------------


@pytest.mark.parametrize('text, expected', [
    ('1/8', Fraction(1, 8)), ('0.125', Fraction(1, 8)),
    (' 1/16 ', Fraction(1, 16)),
    ('1', Fraction(1)), ('2/4', Fraction(1, 2))
])
def test_parse_fraction_accepts_ratios_and_decimals(text, expected):
    assert splits.parse_fraction(text) == expected


@pytest.mark.parametrize('text', ['0', '-1/8', '3/2', '1.5', '1/0', 'abc',
                                  '', 'nan'])
def test_parse_fraction_refuses_bad_values_naming_them(text):
    with pytest.raises(SplitError, match=repr(text).replace('.', r'\.')):
        splits.parse_fraction(text)


@pytest.mark.parametrize('pool_size, fraction, expected', PUBLISHED_COUNTS)
def test_num_labeled_matches_published_counts(pool_size, fraction, expected):
    count = splits.num_labeled(
        pool_size, fraction=splits.parse_fraction(fraction))
    assert count == expected


def test_num_labeled_float_fraction_is_exact():
    # 0.7 * 10 is 7.000000000000001 in floats; 7 images, not 8.
    assert splits.num_labeled(10, fraction=0.7) == 7
    # Fraction(0.1) is slightly above 1/10; still exactly 1 image of 10.
    assert splits.num_labeled(10, fraction=0.1) == 1
    assert splits.num_labeled(367, fraction=0.125) == 46


def test_num_labeled_accepts_num_up_to_the_pool():
    assert splits.num_labeled(367, num=46) == 46
    assert splits.num_labeled(367, num=367) == 367


@pytest.mark.parametrize('kwargs, message', [
    (dict(num=368), 'num 368'),
    (dict(num=0), 'num 0'),
    (dict(fraction=Fraction(3, 2)), 'fraction 3/2'),
    (dict(fraction=0.0), 'fraction 0'),
    (dict(), 'exactly one'),
    (dict(num=4, fraction=Fraction(1, 8)), 'exactly one'),
])
def test_num_labeled_refuses_bad_requests(kwargs, message):
    with pytest.raises(SplitError, match=message):
        splits.num_labeled(367, **kwargs)


# --- sampling -------------------------------------------------------------


def test_sample_is_deterministic_for_a_seed_and_ignores_input_order():
    pool = voc_names(200)
    first = splits.sample_labeled(pool, 25, seed=0)
    assert splits.sample_labeled(pool, 25, seed=0) == first
    assert splits.sample_labeled(list(reversed(pool)), 25, seed=0) == first
    assert len(first) == 25 and first == sorted(first)
    assert set(first) <= set(pool)


def test_sample_differs_between_seeds():
    pool = voc_names(200)
    assert (splits.sample_labeled(pool, 25, seed=0) !=
            splits.sample_labeled(pool, 25, seed=1))


def test_smaller_labeled_sets_are_nested_in_larger_ones():
    pool = voc_names(1464)
    sets = [set(splits.sample_labeled(pool, n, seed=3))
            for n in (92, 183, 366, 732)]
    assert sets[0] < sets[1] < sets[2] < sets[3]


@pytest.mark.parametrize('pool, n, message', [
    (['a', 'b', 'a'], 1, "duplicate names \\['a'\\]"),
    (['a', 'b'], 3, 'cannot sample 3 labeled images from a pool of 2'),
    (['a', 'b'], 0, 'cannot sample 0'),
])
def test_sample_refuses_bad_input(pool, n, message):
    with pytest.raises(SplitError, match=message):
        splits.sample_labeled(pool, n, seed=0)


# --- pools ----------------------------------------------------------------


@pytest.mark.parametrize('dataset, list_name, size', [
    ('voc-classic', 'train', 1464),
    ('voc-blender', 'trainaug', 10582),
    ('voc-aug', 'trainaug', 10582),
])
def test_cli_counts_on_fake_voc_pools(tmp_path, capsys, dataset, list_name,
                                      size):
    names = voc_names(size)
    root = make_voc_root(tmp_path, list_name, reversed(names))
    assert splits.list_pool(dataset, root) == names
    for pool_size, fraction, expected in PUBLISHED_COUNTS:
        if pool_size != size:
            continue
        out_dir = tmp_path / 'out'
        code, out, err = run_cli(capsys, '--dataset', dataset, '--root', root,
                                 '--fraction', fraction, '--out-dir', out_dir)
        assert (code, err) == (0, '')
        split_dir = out_dir / f'{FRACTION_TAGS[fraction]}_seed0'
        labeled = read_lines(split_dir / 'labeled.txt')
        unlabeled = read_lines(split_dir / 'unlabeled.txt')
        assert len(labeled) == expected
        assert len(unlabeled) == size - expected
        assert_is_split_of(names, labeled, unlabeled)
        assert f'labeled:   {expected} ' in out
        assert f'unlabeled: {size - expected}\n' in out


def test_cli_counts_on_fake_cityscapes_pool(tmp_path, capsys):
    root = make_cityscapes_root(tmp_path, 2975)
    # An image of another split and a label-like file must stay out.
    make_cityscapes_root(tmp_path, 3, split='val')
    (root / 'leftImg8bit' / 'train' / 'aachen' / 'notes.png').touch()
    pool = splits.list_pool('cityscapes', root)
    assert len(pool) == 2975
    assert pool[0] == 'aachen/aachen_000000_000019'
    # 2974 % 3 == 1, so the last image lies in CITIES[1].
    assert 'bochum/bochum_002974_000019' in pool
    for _, fraction, expected in PUBLISHED_COUNTS[8:12]:
        code, _, err = run_cli(capsys, '--dataset', 'cityscapes', '--root',
                               root, '--fraction', fraction, '--out-dir',
                               tmp_path / 'out')
        assert (code, err) == (0, '')
        split_dir = tmp_path / 'out' / f'{FRACTION_TAGS[fraction]}_seed0'
        labeled = read_lines(split_dir / 'labeled.txt')
        unlabeled = read_lines(split_dir / 'unlabeled.txt')
        assert len(labeled) == expected
        assert_is_split_of(pool, labeled, unlabeled)


def test_cityscapes_pool_split_selects_the_split_dir(tmp_path):
    root = make_cityscapes_root(tmp_path, 4, split='val')
    assert splits.list_pool('cityscapes', root, split='val') == [
        'aachen/aachen_000000_000019', 'aachen/aachen_000003_000019',
        'bochum/bochum_000001_000019', 'zurich/zurich_000002_000019'
    ]


def test_generic_pool_lists_nested_files_with_the_suffix(tmp_path):
    img_dir = tmp_path / 'root' / 'images' / 'training'
    (img_dir / 'sub').mkdir(parents=True)
    for name in ['b.jpg', 'a.jpg', 'sub/c.jpg', 'skip.png']:
        (img_dir / name).touch()
    pool = splits.list_pool('generic', tmp_path / 'root',
                            img_dir='images/training', img_suffix='.jpg')
    assert pool == ['a', 'b', 'sub/c']


@pytest.mark.parametrize('kwargs, message', [
    (dict(dataset='generic', img_dir='images'), 'needs both'),
    (dict(dataset='camvid', img_dir='train'), 'only for dataset generic'),
    (dict(dataset='camvid', split='../train'), "'../train'"),
    (dict(dataset='kitti'), "unknown dataset 'kitti'"),
])
def test_layout_options_are_checked(tmp_path, kwargs, message):
    with pytest.raises(SplitError, match=message):
        splits.list_pool(root=tmp_path, **kwargs)


def test_pool_errors_name_the_missing_or_empty_path(tmp_path):
    with pytest.raises(SplitError, match='dataset root not found: .*nowhere'):
        splits.list_pool('camvid', tmp_path / 'nowhere')
    with pytest.raises(SplitError, match='list file not found: .*train.txt'):
        splits.list_pool('voc-classic', tmp_path)
    (tmp_path / 'train').mkdir()
    (tmp_path / 'train' / 'readme.txt').touch()
    with pytest.raises(SplitError, match=r"empty pool: .*'\*\.png' under"):
        splits.list_pool('camvid', tmp_path)


def test_duplicate_names_in_a_pool_list_are_refused(tmp_path):
    root = make_voc_root(tmp_path, 'train', ['2007_000032', '2007_000039',
                                             '2007_000032'])
    with pytest.raises(SplitError,
                       match="duplicate names \\['2007_000032'\\]"):
        splits.list_pool('voc-classic', root)


# --- published labeled lists ----------------------------------------------


def test_labeled_list_in_three_line_styles_gives_pool_names(tmp_path):
    pool = voc_names(10)
    list_path = tmp_path / 'u2pl_1-4.txt'
    list_path.write_text('2007_000003\n'
                         '2007_000007.jpg\n'
                         '\n'
                         'JPEGImages/2007_000001.jpg '
                         'SegmentationClass/2007_000001.png\r\n')
    labeled = splits.read_labeled_list(list_path, pool, 'voc-classic')
    assert labeled == ['2007_000001', '2007_000003', '2007_000007']
    assert splits.complement(pool, labeled) == [
        '2007_000000', '2007_000002', '2007_000004', '2007_000005',
        '2007_000006', '2007_000008', '2007_000009'
    ]


def test_labeled_list_in_cityscapes_and_camvid_release_styles(tmp_path):
    city_pool = ['aachen/aachen_000000_000019', 'bochum/bochum_000000_000019']
    city_list = tmp_path / 'city.txt'
    city_list.write_text(
        'leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png '
        'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png\n'
        'bochum/bochum_000000_000019_leftImg8bit.png\n')
    assert splits.read_labeled_list(city_list, city_pool,
                                    'cityscapes') == city_pool
    camvid_list = tmp_path / 'camvid.txt'
    camvid_list.write_text('/SegNet/CamVid/train/0001TP_006720.png '
                           '/SegNet/CamVid/trainannot/0001TP_006720.png\n')
    assert splits.read_labeled_list(
        camvid_list, ['0001TP_006690', '0001TP_006720'],
        'camvid') == ['0001TP_006720']


def test_labeled_list_prefers_the_longest_matching_name(tmp_path):
    list_path = tmp_path / 'list.txt'
    list_path.write_text('images/a/x.jpg\n')
    labeled = splits.read_labeled_list(list_path, ['x', 'a/x'], 'generic',
                                       img_suffix='.jpg')
    assert labeled == ['a/x']


def test_labeled_list_refuses_unknown_names_with_name_and_count(tmp_path):
    list_path = tmp_path / 'list.txt'
    list_path.write_text('2007_000001\n2012_999999\n'
                         'JPEGImages/2011_888888.jpg Seg/2011_888888.png\n')
    with pytest.raises(SplitError) as error:
        splits.read_labeled_list(list_path, voc_names(5), 'voc-classic')
    message = str(error.value)
    assert '2 entries are not in the pool of 5 images' in message
    assert "['2012_999999', 'JPEGImages/2011_888888.jpg']" in message
    assert 'list.txt' in message


def test_labeled_list_refuses_duplicates_after_normalising(tmp_path):
    list_path = tmp_path / 'list.txt'
    list_path.write_text('2007_000001\nJPEGImages/2007_000001.jpg\n')
    with pytest.raises(SplitError,
                       match="duplicate names \\['2007_000001'\\]"):
        splits.read_labeled_list(list_path, voc_names(5), 'voc-classic')


def test_labeled_list_missing_or_empty_is_refused(tmp_path):
    with pytest.raises(SplitError, match='labeled list not found: .*gone'):
        splits.read_labeled_list(tmp_path / 'gone.txt', ['a'], 'camvid')
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n')
    with pytest.raises(SplitError, match='empty'):
        splits.read_labeled_list(empty, ['a'], 'camvid')


def test_cli_with_labeled_list_uses_its_stem_as_tag(tmp_path, capsys):
    root = make_voc_root(tmp_path, 'train', voc_names(6))
    list_path = tmp_path / 'published_92.txt'
    list_path.write_text('JPEGImages/2007_000004.jpg x.png\n2007_000002\n')
    code, out, _ = run_cli(capsys, '--dataset', 'voc-classic', '--root', root,
                           '--labeled-list', list_path, '--out-dir',
                           tmp_path / 'out')
    assert code == 0
    split_dir = tmp_path / 'out' / 'published_92'
    assert read_lines(split_dir / 'labeled.txt') == [
        '2007_000002', '2007_000004'
    ]
    assert read_lines(split_dir / 'unlabeled.txt') == [
        '2007_000000', '2007_000001', '2007_000003', '2007_000005'
    ]
    assert 'pool:      6 images' in out


def test_cli_num_tag_and_errors(tmp_path, capsys):
    root = make_voc_root(tmp_path, 'train', voc_names(6))
    code, _, _ = run_cli(capsys, '--dataset', 'voc-classic', '--root', root,
                         '--num', 2, '--seed', 5, '--out-dir', tmp_path / 'o')
    assert code == 0
    assert len(read_lines(tmp_path / 'o' / 'n2_seed5' / 'labeled.txt')) == 2
    code, out, err = run_cli(capsys, '--dataset', 'voc-classic', '--root',
                             root, '--num', 7, '--out-dir', tmp_path / 'o')
    assert (code, out) == (1, '')
    assert 'num 7 must be between 1 and the pool size 6' in err
    code, _, err = run_cli(capsys, '--dataset', 'voc-classic', '--root', root,
                           '--fraction', '1/0', '--out-dir', tmp_path / 'o')
    assert code == 1 and "fraction '1/0'" in err


def test_write_split_refuses_overlap(tmp_path):
    with pytest.raises(SplitError, match="overlap, e.g. \\['b'\\]"):
        splits.write_split(tmp_path, 'tag', ['a', 'b'], ['b', 'c'])
    assert not (tmp_path / 'tag').exists()


def test_tool_runs_without_torch_or_mmseg():
    # Run in a fresh interpreter: this process may already hold torch.
    check = ('import runpy, sys; '
             f'runpy.run_path({str(TOOL_PATH)!r}); '
             "print(sorted(m for m in ('torch', 'mmseg', 'mmengine', 'numpy')"
             ' if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', check],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]'


# --- real CamVid ----------------------------------------------------------


@pytest.mark.parametrize('fraction, tag, n_labeled, n_unlabeled', [
    ('1/8', '1-8_seed0', 46, 321),
    ('1/4', '1-4_seed0', 92, 275),
])
def test_cli_on_real_camvid_matches_committed_splits(tmp_path, capsys,
                                                     fraction, tag, n_labeled,
                                                     n_unlabeled):
    code, out, err = run_cli(capsys, '--dataset', 'camvid', '--root',
                             CAMVID_ROOT, '--fraction', fraction, '--out-dir',
                             tmp_path)
    assert (code, err) == (0, ''), err
    assert 'pool:      367 images' in out
    labeled = read_lines(tmp_path / tag / 'labeled.txt')
    unlabeled = read_lines(tmp_path / tag / 'unlabeled.txt')
    assert (len(labeled), len(unlabeled)) == (n_labeled, n_unlabeled)
    pool = [line.split()[0].rsplit('/', 1)[1][:-len('.png')]
            for line in (CAMVID_ROOT / 'train.txt').read_text().splitlines()]
    assert_is_split_of(pool, labeled, unlabeled)
    for name in labeled + unlabeled:
        assert (CAMVID_ROOT / 'train' / f'{name}.png').is_file(), name
        assert (CAMVID_ROOT / 'trainannot' / f'{name}.png').is_file(), name
    # The files the configs use must be exactly what the tool produces.
    committed = REPO_ROOT / 'splits' / 'camvid' / tag
    assert read_lines(committed / 'labeled.txt') == labeled
    assert read_lines(committed / 'unlabeled.txt') == unlabeled
