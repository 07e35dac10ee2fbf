"""Show what a semi-supervised model's teacher makes of unlabeled images.

For each image, one PNG grid (3 panels per row, a title above each):

1. the image (after the config's test pipeline, e.g. resized);
2. the teacher's prediction (arg-max of its softmax, dataset palette);
3. the per-pixel entropy the pseudo-labeler saw, 0 (dark) to log(C);
4. reliable (white) / unreliable (black) pixels, from the model's own
   pseudo-labeler (U2PL's entropy partition at the schedule point of the
   checkpoint, or ``--iter``);
5. with a prototype rectifier (mean teacher with ``rectifier``, RML's
   ``rectifier1``/``rectifier2``): the arg-max of the rectified softmax,
   i.e. the label the student is trained on;
6. the ground truth, when a label file is found for the image (the
   config's ``img_path`` -> ``seg_map_path`` data prefixes).

The teacher runs exactly as in training, by the model's own teacher step
(``TeacherStudent.pseudo_label``) with ``update_state=False``: the
rectifier and the class-balance component are copies per image, so the
prototypes and class shares the checkpoint saved judge every image and no
image updates them for the next.

Examples:
    python tools/analysis_tools/visualize_pseudo_labels.py CONFIG CKPT \
        --images splits/camvid/1-8_seed0/unlabeled.txt --num 8 \
        --out-dir work_dirs/pseudo_vis
    python tools/analysis_tools/visualize_pseudo_labels.py CONFIG CKPT \
        --images a.png b.png --teacher teacher2 --out-dir vis
"""
import argparse
import copy
import inspect
import math
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.utils import ProgressBar
from PIL import Image, ImageDraw

import mmseg_semi  # noqa: F401  (registers modules, applies patches)
from mmseg.registry import DATASETS
from mmseg_semi.models.utils.pseudo_label_functional import pixel_entropy
from mmseg_semi.models.utils.segmentor_forward import valid_pixel_mask
from mmseg_semi.utils.checkpoint_loading import build_model_from_checkpoint

#: Height in pixels of the title strip above each panel.
TITLE_HEIGHT = 20
#: Panels per row of the grid.
GRID_COLUMNS = 3
#: Dataloaders whose dataset settings locate images and labels.
LOADER_KEYS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
IGNORE_INDEX = 255


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Visualise teacher predictions, entropy, reliable '
        'pixels and rectified pseudo-labels of a semi-supervised model')
    parser.add_argument('config', help='semi-supervised config')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument(
        '--images',
        nargs='+',
        required=True,
        help='image files, and/or split files (.txt, one name per line, '
        'looked up under --data-root/--img-dir)')
    parser.add_argument(
        '--data-root',
        help="dataset root for split names (default: the config's "
        'unlabeled, else labeled, training dataset data_root)')
    parser.add_argument(
        '--img-dir',
        help='image folder under --data-root (default: that dataset\'s '
        'data_prefix.img_path)')
    parser.add_argument(
        '--img-suffix',
        default=None,
        help="suffix added to split names (default: the dataset's)")
    parser.add_argument('--out-dir', required=True, help='where PNGs go')
    parser.add_argument(
        '--num', type=int, help='visualise at most this many images')
    parser.add_argument(
        '--teacher',
        help='teacher to show (default: the first, e.g. teacher or '
        'teacher1)')
    parser.add_argument(
        '--iter',
        type=int,
        help="training iteration for the labeler's schedule (default: the "
        "checkpoint's, else 0)")
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='config overrides')
    return parser.parse_args(argv)


# ------------------------------------------------------------ image lists
def training_dataset_cfg(cfg: Config) -> dict:
    """The unlabeled training dataset config, else the labeled one."""
    train_cfg = cfg.get('train_cfg') or {}
    for loader in (train_cfg.get('unlabeled_dataloader'),
                   cfg.get('train_dataloader')):
        if loader and loader.get('dataset'):
            return loader['dataset']
    return {}


def dataset_img_suffix(dataset: dict) -> str:
    """The image suffix of a dataset config: its ``img_suffix``, else the
    registered dataset class's default (CamVid '.png', CCP '.jpg')."""
    if dataset.get('img_suffix'):
        return dataset['img_suffix']
    with DATASETS.switch_scope_and_registry('mmseg') as registry:
        dataset_cls = registry.get(dataset.get('type', ''))
    if dataset_cls is None:
        return '.png'
    parameter = inspect.signature(dataset_cls.__init__).parameters.get(
        'img_suffix')
    return parameter.default if parameter is not None and \
        parameter.default is not inspect.Parameter.empty else '.png'


def resolve_images(items: Sequence[str], image_dir: Optional[str],
                   img_suffix: str) -> List[str]:
    """Image paths from paths and split files (``.txt``).

    A split file lists one image name per line; a name without a suffix
    gets ``img_suffix``; names are looked up in ``image_dir``.
    """
    paths = []
    for item in items:
        if not item.endswith('.txt'):
            if not osp.isfile(item):
                raise FileNotFoundError(f'--images: {item} does not exist')
            paths.append(item)
            continue
        if not osp.isfile(item):
            raise FileNotFoundError(f'--images: split file {item} does not '
                                    'exist')
        if image_dir is None or not osp.isdir(image_dir):
            raise FileNotFoundError(
                f'split file {item} names images, but their folder '
                f'{image_dir!r} does not exist; set --data-root/--img-dir')
        with open(item) as file:
            names = [line.strip() for line in file if line.strip()]
        for name in names:
            if not osp.splitext(name)[1]:
                name += img_suffix
            path = osp.join(image_dir, name)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'{path} (listed in {item}) does not exist')
            paths.append(path)
    return paths


def label_locations(cfg: Config) -> List[Tuple[str, str, str, bool]]:
    """``(image dir, label dir, label suffix, reduce_zero_label)`` of every
    dataset in the config that has labels."""
    locations = []
    for key in LOADER_KEYS:
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        prefix = dataset.get('data_prefix') or {}
        if not prefix.get('seg_map_path'):
            continue
        root = dataset.get('data_root') or ''
        locations.append((osp.abspath(osp.join(root, prefix.get(
            'img_path', ''))), osp.abspath(osp.join(root, prefix[
                'seg_map_path'])), dataset.get('seg_map_suffix', '.png'),
                          bool(dataset.get('reduce_zero_label', False))))
    return locations


def find_label(image_path: str, locations) -> Optional[Tuple[str, bool]]:
    """The label file of an image and its ``reduce_zero_label``, if any."""
    image_path = osp.abspath(image_path)
    for image_dir, label_dir, suffix, reduce_zero in locations:
        if osp.dirname(image_path) != image_dir:
            continue
        stem = osp.splitext(osp.basename(image_path))[0]
        path = osp.join(label_dir, stem + suffix)
        if osp.isfile(path):
            return path, reduce_zero
    return None


def read_label(path: str, reduce_zero_label: bool, num_classes: int,
               size: Tuple[int, int]) -> np.ndarray:
    """(H, W) class indices resized (nearest) to ``size`` = (H, W); values
    outside the classes (e.g. CamVid's 'Unlabelled' 11) become ignore."""
    label = np.array(Image.open(path).resize(size[::-1], Image.NEAREST))
    if label.ndim == 3:
        label = label[..., 0]
    label = label.astype(np.int64)
    if reduce_zero_label:
        label = np.where(label == 0, IGNORE_INDEX, label - 1)
    label[(label < 0) | (label >= num_classes)] = IGNORE_INDEX
    return label


# --------------------------------------------------------------- the model
def class_palette(cfg: Config, num_classes: int) -> np.ndarray:
    """(num_classes + 1, 3) uint8 colours: the dataset's palette, black for
    ignored pixels (last row)."""
    from mmseg.registry import DATASETS
    palette = None
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        meta = dict(dataset.get('metainfo') or {})
        if 'palette' not in meta and dataset.get('type'):
            dataset_class = DATASETS.get(dataset['type'])
            meta = dict(getattr(dataset_class, 'METAINFO', {}), **meta)
        if meta.get('palette') is not None:
            palette = np.array(meta['palette'], dtype=np.uint8)
            break
    if palette is None or len(palette) < num_classes:
        # Deterministic colours when the dataset defines none.
        palette = np.random.RandomState(0).randint(
            0, 256, (num_classes, 3)).astype(np.uint8)
    return np.concatenate([palette[:num_classes], [[0, 0, 0]]]).astype(
        np.uint8)


def teacher_pair(model, name: Optional[str]):
    """The named teacher's name (default the first teacher) and its
    ``TeacherStudent`` pair."""
    teachers = [teacher for teacher, _ in model.teacher_student_names]
    name = name or teachers[0]
    if name not in teachers:
        raise ValueError(f'--teacher {name!r} is not one of {teachers}')
    return name, model.pair_of(name)


def teacher_outputs(pair, inputs: torch.Tensor, data_samples,
                    progress: Tuple[int, int]):
    """The teacher's raw softmax and its pseudo-labels for a batch, by the
    training step's teacher step, leaving the model's state as it was."""
    valid = valid_pixel_mask(data_samples, *inputs.shape[2:], inputs.device)
    output = pair.pseudo_label(inputs, valid, progress, update_state=False)
    return output.probs, output.pseudo


def inference_pipeline(cfg: Config):
    """The config's test pipeline without annotation loading."""
    from mmcv.transforms import Compose
    pipeline = cfg.get('test_pipeline') or \
        cfg.test_dataloader.dataset.pipeline
    from mmcv.transforms import LoadAnnotations
    from mmseg.registry import TRANSFORMS

    def loads_annotations(transform: dict) -> bool:
        cls = transform['type']
        if isinstance(cls, str):
            cls = TRANSFORMS.get(cls)
        return isinstance(cls, type) and issubclass(cls, LoadAnnotations)

    # Any annotation loader (mmseg's, our LoadCheckedAnnotations, ...).
    return Compose([
        copy.deepcopy(t) for t in pipeline if not loads_annotations(t)
    ])


# ------------------------------------------------------------------ panels
def colour_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) colours; ignore -> palette's last row."""
    index = np.where(labels == IGNORE_INDEX, len(palette) - 1, labels)
    return palette[index]


def colour_entropy(entropy: np.ndarray, num_classes: int) -> np.ndarray:
    """Entropy / log(C) through matplotlib's viridis colour map."""
    from matplotlib import colormaps
    scaled = np.clip(entropy / math.log(num_classes), 0, 1)
    return (colormaps['viridis'](scaled)[..., :3] * 255).astype(np.uint8)


def panel_grid(panels: Sequence[Tuple[str, np.ndarray]],
               columns: int = GRID_COLUMNS) -> Image.Image:
    """Panels of one size in rows of ``columns``, a title strip above each.

    The grid is ``columns * W`` wide (fewer columns when there are fewer
    panels) and ``rows * (H + TITLE_HEIGHT)`` high.
    """
    height, width = panels[0][1].shape[:2]
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    grid = Image.new('RGB', (columns * width, rows *
                             (height + TITLE_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for index, (title, array) in enumerate(panels):
        if array.shape[:2] != (height, width):
            raise ValueError(f'panel {title!r} is {array.shape[:2]}, '
                             f'expected {(height, width)}')
        left = (index % columns) * width
        top = (index // columns) * (height + TITLE_HEIGHT)
        draw.text((left + 4, top + 4), title, fill=(0, 0, 0))
        grid.paste(Image.fromarray(array), (left, top + TITLE_HEIGHT))
    return grid


def visualize_image(model, teacher_name, pair, pipeline, image_path: str,
                    palette: np.ndarray, locations,
                    progress: Tuple[int, int]) -> Image.Image:
    """The grid of one image (see the module docstring)."""
    data = pipeline(dict(img_path=image_path))
    device = next(model.parameters()).device
    batch = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    inputs = batch['inputs'].to(device)
    probs, pseudo = teacher_outputs(pair, inputs, batch['data_samples'],
                                    progress)
    height, width = data['data_samples'].img_shape[:2]
    num_classes = probs.shape[1]

    def crop(tensor):  # drop the preprocessor's padding
        return tensor[0, ..., :height, :width].cpu().numpy()

    image = data['inputs'].permute(1, 2, 0).numpy()[..., ::-1]  # BGR->RGB
    reliable = crop(pseudo.reliable)
    panels = [
        (osp.basename(image_path), np.ascontiguousarray(image)),
        (f'{teacher_name} prediction',
         colour_labels(crop(probs.argmax(dim=1)), palette)),
        ('entropy (0 - log C)',
         colour_entropy(crop(pixel_entropy(pseudo.probs, dim=1)),
                        num_classes)),
        (f'reliable {reliable.mean():.0%} (iter {progress[0]}/'
         f'{progress[1]})', (reliable[..., None] * np.full(3, 255)).astype(
             np.uint8)),
    ]
    if pair.rectifier is not None:
        changed = float(pseudo.rectified_ratio)
        panels.append((f'rectified label ({changed:.1%} changed)',
                       colour_labels(crop(pseudo.probs.argmax(dim=1)),
                                     palette)))
    label = find_label(image_path, locations)
    if label is not None:
        gt = read_label(label[0], label[1], num_classes, (height, width))
        panels.append(('ground truth', colour_labels(gt, palette)))
    return panel_grid(panels)


def schedule_progress(cfg: Config, meta: dict,
                      iteration: Optional[int]) -> Tuple[int, int]:
    """``(t, T)`` for the pseudo-labeler: ``--iter`` or the checkpoint's
    iteration (else 0), and the config's ``train_cfg.max_iters``."""
    max_iters = int((cfg.get('train_cfg') or {}).get('max_iters') or 1)
    if iteration is None:
        iteration = int(meta.get('iter', 0))
    if iteration < 0:
        raise ValueError(f'--iter must be >= 0, got {iteration}')
    return min(iteration, max_iters), max_iters


def main(argv=None) -> List[str]:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if not any(key in cfg.model for key in ('segmentor', 'segmentor1')):
        raise ValueError(f'{args.config} is not a semi-supervised config '
                         '(its model has no segmentor or segmentor1)')
    dataset = training_dataset_cfg(cfg)
    data_root = args.data_root or dataset.get('data_root') or ''
    img_dir = args.img_dir if args.img_dir is not None else (
        dataset.get('data_prefix') or {}).get('img_path', '')
    images = resolve_images(args.images, osp.join(data_root, img_dir),
                            args.img_suffix or dataset_img_suffix(dataset))
    if args.num is not None:
        images = images[:args.num]
    if not images:
        raise ValueError(f'--images {args.images} names no image')

    model, meta = build_model_from_checkpoint(cfg, args.checkpoint,
                                              args.device)
    if not hasattr(model, 'pseudo_labeler'):
        raise ValueError(f'{args.config}: {type(model).__name__} has no '
                         'pseudo_labeler to visualise')
    teacher_name, pair = teacher_pair(model, args.teacher)
    progress = schedule_progress(cfg, meta, args.iter)
    palette = class_palette(cfg, pair.teacher.decode_head.num_classes)
    pipeline = inference_pipeline(cfg)
    locations = label_locations(cfg)

    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    bar = ProgressBar(len(images))
    for image_path in images:
        grid = visualize_image(model, teacher_name, pair, pipeline,
                               image_path, palette, locations, progress)
        out_file = osp.join(args.out_dir,
                            osp.splitext(osp.basename(image_path))[0] +
                            '.png')
        grid.save(out_file)
        written.append(out_file)
        bar.update()
    print(f'\nwrote {len(written)} grid(s) to {args.out_dir}')
    return written


if __name__ == '__main__':
    main()
