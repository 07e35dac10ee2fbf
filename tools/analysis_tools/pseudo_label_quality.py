"""Measure a teacher's pseudo-labels against ground truth.

For images whose label maps exist (e.g. the unlabeled CamVid split, whose
masks the training never reads), runs the teacher exactly as training does
(see ``visualize_pseudo_labels.py``) and prints, as markdown:

* pixel accuracy of the pseudo-labels on all valid pixels and on the
  reliable ones, and the reliable fraction;
* per class: share of pixels predicted vs share in the ground truth, and the
  IoU of the pseudo-labels.

A class whose predicted share collapses towards 0 while its true share does
not is the self-training confirmation bias this tool is meant to catch.

Example::

    python tools/analysis_tools/pseudo_label_quality.py CONFIG \
        work_dirs/u2pl/iter_500.pth \
        --images splits/camvid/1-8_seed0/unlabeled.txt --num 40
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction
from mmengine.utils import ProgressBar

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from visualize_pseudo_labels import (  # noqa: E402
    dataset_img_suffix, find_label, inference_pipeline, label_locations,
    read_label, resolve_images, schedule_progress, teacher_outputs,
    teacher_pair, training_dataset_cfg)

from mmseg_semi.utils.checkpoint_loading import \
    build_model_from_checkpoint  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--images', nargs='+', required=True,
                        help='image paths and/or split files')
    parser.add_argument('--num', type=int, default=None)
    parser.add_argument('--teacher', default=None,
                        help='teacher attribute (default: the first)')
    parser.add_argument('--iter', type=int, default=None,
                        help="schedule point t (default: the checkpoint's)")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def quality_from_confusion(confusion: torch.Tensor) -> dict:
    """Pixel accuracy, per-class IoU and class shares from a (C, C)
    confusion matrix (rows: ground truth, columns: pseudo-label)."""
    confusion = confusion.double()
    total = confusion.sum().clamp_min(1)
    true_positive = confusion.diag()
    gt_pixels = confusion.sum(dim=1)
    predicted_pixels = confusion.sum(dim=0)
    union = gt_pixels + predicted_pixels - true_positive
    iou = torch.where(union > 0, true_positive / union.clamp_min(1),
                      torch.full_like(union, float('nan')))
    return dict(
        accuracy=(true_positive.sum() / total).item(),
        iou=iou.tolist(),
        gt_share=(gt_pixels / total).tolist(),
        predicted_share=(predicted_pixels / total).tolist())


def confusion_matrix(gt: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """(C, C) counts of (gt, pred) pairs over ``mask``."""
    index = gt[mask] * num_classes + pred[mask]
    return torch.bincount(
        index, minlength=num_classes**2).view(num_classes, num_classes)


def markdown_report(all_pixels: dict, reliable: dict, reliable_fraction: float,
                    class_names) -> str:
    lines = [
        f"pixel accuracy: all valid {100 * all_pixels['accuracy']:.2f}%, "
        f"reliable {100 * reliable['accuracy']:.2f}% "
        f'(reliable fraction {100 * reliable_fraction:.1f}%)', '',
        '| class | GT share | predicted share | IoU |', '|---|---|---|---|'
    ]
    for index, name in enumerate(class_names):
        iou = all_pixels['iou'][index]
        lines.append(
            f"| {name} | {100 * all_pixels['gt_share'][index]:.1f}% | "
            f"{100 * all_pixels['predicted_share'][index]:.1f}% | "
            + ('-' if iou != iou else f'{100 * iou:.1f}') + ' |')
    ious = [iou for iou in all_pixels['iou'] if iou == iou]
    if ious:
        mean_iou = 100 * sum(ious) / len(ious)
        lines.append(f'| mean (mIoU) | | | {mean_iou:.2f} |')
    return '\n'.join(lines)


@torch.no_grad()
def main(argv=None) -> str:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    dataset = training_dataset_cfg(cfg)
    data_root = dataset.get('data_root') or ''
    img_dir = (dataset.get('data_prefix') or {}).get('img_path', '')
    images = resolve_images(args.images, osp.join(data_root, img_dir),
                            dataset_img_suffix(dataset))[:args.num]
    locations = label_locations(cfg)
    labeled = [(path, find_label(path, locations)) for path in images]
    labeled = [(path, label) for path, label in labeled if label is not None]
    if not labeled:
        raise ValueError(f'none of the {len(images)} images from '
                         f'--images {args.images} has a label map')

    model, meta = build_model_from_checkpoint(cfg, args.checkpoint,
                                              args.device)
    name, pair = teacher_pair(model, args.teacher)
    progress = schedule_progress(cfg, meta, args.iter)
    num_classes = pair.teacher.decode_head.num_classes
    pipeline = inference_pipeline(cfg)
    confusion_all = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion_reliable = torch.zeros_like(confusion_all)
    bar = ProgressBar(len(labeled))
    for image_path, (label_path, reduce_zero_label) in labeled:
        data = pipeline(dict(img_path=image_path))
        batch = model.data_preprocessor(
            dict(inputs=[data['inputs']],
                 data_samples=[data['data_samples']]), False)
        inputs = batch['inputs'].to(args.device)
        probs, pseudo = teacher_outputs(pair, inputs, batch['data_samples'],
                                        progress)
        height, width = data['data_samples'].img_shape[:2]
        pred = pseudo.probs.argmax(dim=1)[0, :height, :width].cpu()
        reliable = pseudo.reliable[0, :height, :width].cpu()
        gt = torch.from_numpy(
            read_label(label_path, reduce_zero_label, num_classes,
                       (height, width))).long()
        valid = gt < num_classes
        confusion_all += confusion_matrix(gt, pred, valid, num_classes)
        confusion_reliable += confusion_matrix(gt, pred, valid & reliable,
                                               num_classes)
        bar.update()
    classes = (meta.get('dataset_meta') or {}).get('classes') or [
        str(c) for c in range(num_classes)
    ]
    report = markdown_report(
        quality_from_confusion(confusion_all),
        quality_from_confusion(confusion_reliable),
        (confusion_reliable.sum() / confusion_all.sum().clamp_min(1)).item(),
        classes)
    print(f'\n{name} of {args.checkpoint} at t={progress[0]}/{progress[1]}, '
          f'{len(labeled)} images\n\n{report}')
    return report


if __name__ == '__main__':
    main()
