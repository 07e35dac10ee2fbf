"""Segment one image and save the prediction over it, with a class legend.

mmseg's ``demo/image_demo.py`` convention (image, config, checkpoint), for
semi-supervised configs and checkpoints as well as plain or exported ones:
``--predict-on`` picks the network of a semi-supervised model (default: the
config's ``predict_on``). The written PNG is the image with the predicted
classes' palette colours blended in (``--opacity``), and to its right a
legend of the classes present, each with its colour and share of pixels.

Example::

    python demo/image_demo.py data/camvid/test/0001TP_008550.png \\
        configs/mean_teacher/CONFIG.py work_dirs/RUN/iter_1000.pth \\
        --out-file result.png --predict-on student
"""
import argparse
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
from mmengine.config import Config

import mmseg_semi  # noqa: F401  (registers modules, applies patches)
from mmseg.apis import inference_model, init_model

#: Legend layout, in pixels: colour swatch side, row height, margin.
SWATCH = 16
ROW = 24
MARGIN = 8
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-file',
        help='PNG to write (default: <image name>_seg.png in the current '
        'directory)')
    parser.add_argument(
        '--device',
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device to run on (default: cuda:0 if there is a GPU, else '
        'cpu)')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='opacity of the painted prediction, in (0, 1] (default 0.5)')
    parser.add_argument(
        '--predict-on',
        help='network of a semi-supervised model to predict with '
        '(teacher, student, ...)')
    args = parser.parse_args(argv)
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    return args


def load_model(config: str, checkpoint: str, device: str,
               predict_on: Optional[str] = None) -> torch.nn.Module:
    """mmseg's ``init_model``, with ``model.predict_on`` set if given."""
    cfg = Config.fromfile(config)
    if predict_on is not None:
        if not any(key in cfg.model for key in ('segmentor', 'segmentor1')):
            raise ValueError(
                f'--predict-on {predict_on}: {config} is not a '
                'semi-supervised config (its model has no segmentor or '
                'segmentor1)')
        cfg.model.predict_on = predict_on
    return init_model(cfg, checkpoint, device=device)


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            opacity: float) -> np.ndarray:
    """``image`` (H, W, 3) with each pixel's class colour blended in."""
    colours = palette[labels].astype(np.float32)
    blended = image.astype(np.float32) * (1 - opacity) + colours * opacity
    return np.round(blended).astype(np.uint8)


def legend_entries(labels: np.ndarray, classes: Sequence[str],
                   palette: np.ndarray) -> List[Tuple[str, tuple, float]]:
    """(name, colour, % of pixels) of the classes present, largest first."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    order = sorted(np.flatnonzero(counts), key=lambda c: -counts[c])
    return [(classes[c], tuple(int(v) for v in palette[c]),
             100.0 * counts[c] / labels.size) for c in order]


def draw_legend(entries: List[Tuple[str, tuple, float]],
                height: int) -> np.ndarray:
    """A white panel (RGB), at least ``height`` tall, one row per entry."""
    texts = [f'{name} {share:.1f}%' for name, _, share in entries]
    text_width = max(
        (cv2.getTextSize(t, FONT, FONT_SCALE, 1)[0][0] for t in texts),
        default=0)
    width = 3 * MARGIN + SWATCH + text_width
    panel = np.full((max(height, 2 * MARGIN + ROW * len(entries)), width, 3),
                    255, np.uint8)
    for row, ((_, colour, _), text) in enumerate(zip(entries, texts)):
        top = MARGIN + row * ROW
        panel[top:top + SWATCH, MARGIN:MARGIN + SWATCH] = colour
        cv2.putText(panel, text, (2 * MARGIN + SWATCH, top + SWATCH - 3),
                    FONT, FONT_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def render(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
           entries: List[Tuple[str, tuple, float]],
           opacity: float) -> np.ndarray:
    """The overlay and, to its right, the legend (RGB, white padded)."""
    legend = draw_legend(entries, image.shape[0])
    canvas = np.full((legend.shape[0], image.shape[1] + legend.shape[1], 3),
                     255, np.uint8)
    canvas[:image.shape[0], :image.shape[1]] = overlay(
        image, labels, palette, opacity)
    canvas[:, image.shape[1]:] = legend
    return canvas


def main(argv=None) -> str:
    args = parse_args(argv)
    model = load_model(args.config, args.checkpoint, args.device,
                       args.predict_on)
    meta = getattr(model, 'dataset_meta', None) or {}
    classes, palette = meta.get('classes'), meta.get('palette')
    if not classes or palette is None or len(palette) < len(classes):
        raise ValueError(
            f'{args.checkpoint}: its meta has no dataset_meta with classes '
            'and a colour per class to draw with')
    palette = np.asarray(palette, dtype=np.uint8)
    result = inference_model(model, args.img)
    labels = result.pred_sem_seg.data[0].cpu().numpy()
    image = mmcv.imread(args.img, channel_order='rgb')
    entries = legend_entries(labels, classes, palette)
    canvas = render(image, labels, palette, entries, args.opacity)
    out_file = args.out_file or \
        osp.splitext(osp.basename(args.img))[0] + '_seg.png'
    mmcv.imwrite(mmcv.rgb2bgr(canvas), out_file)
    print(f'Wrote {out_file}: ' +
          ', '.join(f'{name} {share:.1f}%' for name, _, share in entries))
    return out_file


if __name__ == '__main__':
    main()
