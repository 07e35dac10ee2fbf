"""Analysis and benchmark tools: curves, pseudo-label grids, model-zoo
comparison, CamVid benchmark summary (tools/analysis_tools, tools/benchmark).
"""
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from PIL import Image

import mmseg_semi  # noqa: F401
from helpers import (REPO_ROOT, SPLIT_DIR, camvid_root,  # noqa: F401
                     ccp_root, load_script, single_thread,
                     tiny_mean_teacher_cfg, tiny_segmentor_cfg,
                     tiny_semi_inputs, tiny_u2pl_cfg)
from mmseg.registry import MODELS

init_default_scope('mmseg')


def load_tool(*parts):
    return load_script('tools', *parts)


plot_curves = load_tool('analysis_tools', 'plot_curves.py')
visualize = load_tool('analysis_tools', 'visualize_pseudo_labels.py')
compare = load_tool('benchmark', 'compare_with_model_zoo.py')
summarize = load_tool('benchmark', 'summarize_camvid_benchmark.py')


# -------------------------------------------------------------- plot_curves
def write_scalars(path):
    records = [
        dict(lr=0.01, loss=2.0, **{'sup_decode.loss_ce': 2.0}, iter=10,
             step=10),
        dict(lr=0.009, loss=1.5, **{'sup_decode.loss_ce': 1.0},
             unsup_loss_ce=0.5, unsup_alpha=0.2, unsup_weight=1.3, iter=20,
             step=20),
        {'teacher/mIoU': 30.0, 'student/mIoU': 28.0, 'step': 20},
        dict(lr=0.008, loss=1.2, **{'sup_decode.loss_ce': 0.8},
             unsup_loss_ce=0.4, unsup_alpha=0.1, unsup_weight=1.1, iter=30,
             step=30),
        {'teacher/mIoU': 35.0, 'student/mIoU': 33.0, 'step': 30},
    ]
    with open(path, 'w') as file:
        file.write('\n'.join(json.dumps(r) for r in records) + '\n')


def test_plot_curves_draws_default_keys(tmp_path):
    scalars = tmp_path / 'scalars.json'
    write_scalars(scalars)
    curves = plot_curves.read_curves(str(scalars))
    # Validation records sit at their training step.
    assert curves['teacher/mIoU'] == ([20, 30], [30.0, 35.0])
    assert curves['unsup_alpha'] == ([20, 30], [0.2, 0.1])

    out = tmp_path / 'curves.png'
    plot_curves.main([str(scalars), '--out', str(out)])
    assert out.stat().st_size > 0
    # Panels: mIoU (teacher+student), losses, unsup_alpha, unsup_weight;
    # lr is not a default key. 8x3 inches per panel at 100 dpi.
    assert Image.open(out).size == (800, 4 * 300)
    keys = plot_curves.select_keys(
        list(curves), plot_curves.DEFAULT_KEYS, 'f', strict=False)
    assert keys == [
        'teacher/mIoU', 'student/mIoU', 'loss', 'sup_decode.loss_ce',
        'unsup_loss_ce', 'unsup_alpha', 'unsup_weight'
    ]


def test_plot_curves_errors_name_file_and_key(tmp_path):
    scalars = tmp_path / 'scalars.json'
    write_scalars(scalars)
    with pytest.raises(KeyError, match=r"scalars.json has no scalar "
                       r"matching 'unsup_teacher_agreement'.*lr"):
        plot_curves.main([
            str(scalars), '--keys', 'loss', 'unsup_teacher_agreement',
            '--out', str(tmp_path / 'x.png')
        ])
    assert not (tmp_path / 'x.png').exists()
    only_lr = tmp_path / 'lr_only.json'
    only_lr.write_text(json.dumps(dict(lr=0.1, iter=1, step=1)) + '\n')
    with pytest.raises(KeyError, match='lr_only.json has none of the keys'):
        plot_curves.main([str(only_lr)])
    with pytest.raises(FileNotFoundError, match='missing.json'):
        plot_curves.main([str(tmp_path / 'missing.json')])
    with pytest.raises(FileNotFoundError, match='vis_data/scalars.json'):
        plot_curves.main([str(tmp_path)])  # a dir without a run


def test_plot_curves_reads_text_log(tmp_path):
    log = tmp_path / 'run.log'
    log.write_text(
        '2026/11/21 05:38:07 - mmengine - INFO - Iter(train) [  10/100]  '
        'lr: 9.9e-03  eta: 0:18:05  time: 0.5554  loss: 1.9084  '
        'sup_decode.loss_ce: 1.9084\n'
        '2026/11/21 05:38:30 - mmengine - INFO - Iter(train) [  20/100]  '
        'lr: 9.5e-03  eta: 0:11:12  time: 0.5354  loss: 1.0475  '
        'sup_decode.loss_ce: 1.0475\n'
        '2026/11/21 05:40:00 - mmengine - INFO - Iter(val) [101/101]    '
        'teacher/aAcc: 84.8600  teacher/mIoU: 39.9400  time: 0.09\n')
    curves = plot_curves.read_curves(str(log))
    assert curves['loss'] == ([10, 20], [1.9084, 1.0475])
    assert curves['teacher/mIoU'] == ([20], [39.94])  # at the last train it
    assert 'eta' not in curves
    assert curves['lr'] == ([10, 20], [9.9e-03, 9.5e-03])


def test_plot_curves_adds_class_shares_of_the_guard_hook(tmp_path):
    """A run dir with the guard's class_shares.jsonl: one more panel per
    teacher, each class's pseudo-label share over its labeled share."""
    run_dir = tmp_path / '20261207_010000'
    (run_dir / 'vis_data').mkdir(parents=True)
    scalars = run_dir / 'vis_data' / 'scalars.json'
    write_scalars(scalars)
    records = [
        dict(iter=50, teacher='teacher1', classes=['bg', 'bag', 'hat'],
             labeled_share=[0.8, 0.2, 0.0],
             pseudo_label_share=[0.9, 0.1, 0.0]),
        dict(iter=100, teacher='teacher1', classes=['bg', 'bag', 'hat'],
             labeled_share=[0.8, 0.2, 0.0],
             pseudo_label_share=[0.96, 0.04, 0.0]),
        dict(iter=50, teacher='teacher2', classes=['bg', 'bag', 'hat'],
             labeled_share=[0.8, 0.2, 0.0],
             pseudo_label_share=[0.8, 0.2, 0.0]),
    ]
    (run_dir / 'class_shares.jsonl').write_text(
        '\n'.join(json.dumps(r) for r in records) + '\n')
    curves = plot_curves.read_curves(str(scalars))
    xs, ys = curves['class_share/teacher1/bag']
    assert xs == [50, 100] and ys == pytest.approx([0.5, 0.2])
    assert curves['class_share/teacher2/bg'] == ([50], [1.0])
    assert 'class_share/teacher1/hat' not in curves  # no labeled pixel
    out = tmp_path / 'curves.png'
    plot_curves.main([str(scalars), '--out', str(out)])
    # mIoU, losses, unsup_alpha, unsup_weight + one share panel per teacher.
    assert Image.open(out).size == (800, 6 * 300)
    (run_dir / 'class_shares.jsonl').write_text('{"iter": 1}\n')
    with pytest.raises(ValueError, match=r'class_shares.jsonl:1 is not'):
        plot_curves.read_curves(str(scalars))


# ---------------------------------------------------- visualize_pseudo_labels
VIS_SIZE = (48, 64)  # (H, W) of the test pipeline's Resize


def tiny_semi_config_text(model_cfg: dict, num_test_images: int = 2) -> str:
    root = camvid_root()
    return '\n'.join([
        "default_scope = 'mmseg'",
        f'model = {model_cfg!r}',
        f'data_root = {root!r}',
        "test_pipeline = [dict(type='LoadImageFromFile'),",
        f"    dict(type='Resize', scale={VIS_SIZE[::-1]!r}, "
        'keep_ratio=False),',
        "    dict(type='LoadAnnotations'), dict(type='PackSegInputs')]",
        "train_dataloader = dict(dataset=dict(type='CamVidDataset',",
        '    data_root=data_root,',
        "    data_prefix=dict(img_path='train', seg_map_path='trainannot')))",
        'test_dataloader = dict(batch_size=1, num_workers=0,',
        "    sampler=dict(type='DefaultSampler', shuffle=False),",
        "    dataset=dict(type='CamVidDataset', data_root=data_root,",
        "        data_prefix=dict(img_path='test', seg_map_path='testannot'),",
        f'        pipeline=test_pipeline, indices={num_test_images}))',
        "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])",
        'train_cfg = dict(max_iters=100)',
    ]) + '\n'


def save_model(model_cfg: dict, tmp_path, name: str, seed: int = 0):
    """Config file and checkpoint of a freshly built model."""
    torch.manual_seed(seed)
    model = MODELS.build(ConfigDict(model_cfg))
    config = tmp_path / f'{name}.py'
    config.write_text(tiny_semi_config_text(model_cfg))
    checkpoint = tmp_path / f'{name}.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    return str(config), str(checkpoint), model


def split_file(tmp_path, count=2):
    with open(osp.join(SPLIT_DIR, '1-8_seed0', 'unlabeled.txt')) as file:
        names = [line.strip() for line in file][:count]
    path = tmp_path / 'names.txt'
    path.write_text('\n'.join(names) + '\n')
    return str(path), names


def panel(grid: np.ndarray, index: int) -> np.ndarray:
    """Panel ``index`` of a 3-column grid, without its title strip."""
    height, width = VIS_SIZE
    top = (index // 3) * (height + visualize.TITLE_HEIGHT) + \
        visualize.TITLE_HEIGHT
    left = (index % 3) * width
    return grid[top:top + height, left:left + width]


def test_visualize_pseudo_labels_writes_grids(tmp_path):
    config, checkpoint, _ = save_model(tiny_mean_teacher_cfg(), tmp_path,
                                       'mt')
    names_file, names = split_file(tmp_path)
    no_label = tmp_path / 'no_label.png'  # outside every data prefix
    shutil.copy(
        osp.join(camvid_root(), 'train', names[0] + '.png'), no_label)
    out_dir = tmp_path / 'vis'
    written = visualize.main([
        config, checkpoint, '--images', names_file,
        str(no_label), '--out-dir',
        str(out_dir), '--data-root',
        camvid_root(), '--img-dir', 'train'
    ])
    assert [osp.basename(p) for p in written] == \
        [n + '.png' for n in names] + ['no_label.png']
    height, width = VIS_SIZE
    for path in written:
        grid = np.array(Image.open(path).convert('RGB'))
        # image, prediction, entropy, reliable (+ ground truth): 2 rows.
        assert grid.shape == (2 * (height + visualize.TITLE_HEIGHT),
                              3 * width, 3)
        # Checkpoint without meta: iteration 0, alpha_0 = 0.2 of the valid
        # pixels (the unpadded image) are unreliable.
        reliable = panel(grid, 3)
        assert set(np.unique(reliable)) <= {0, 255}
        assert abs((reliable[..., 0] == 255).mean() - 0.8) < 0.01
        # The image panel is the resized image itself.
        assert panel(grid, 0).std() > 10
    labelled = np.array(Image.open(written[0]).convert('RGB'))
    unlabelled = np.array(Image.open(written[2]).convert('RGB'))
    assert (panel(unlabelled, 4) == 255).all()  # no ground-truth panel
    assert not (panel(labelled, 4) == 255).all()
    # The tiny model predicts 3 classes: every CamVid class >= 3 is shown
    # as ignored (black) in the ground truth.
    gt = panel(labelled, 4).reshape(-1, 3)
    palette = visualize.class_palette(
        ConfigDict(train_dataloader=dict(
            dataset=dict(type='CamVidDataset'))), 3)
    assert {tuple(c) for c in np.unique(gt, axis=0)} <= \
        {tuple(c) for c in palette}


def test_visualize_rectified_labels_do_not_leak_between_images(tmp_path):
    cfg = tiny_mean_teacher_cfg(
        rectifier=dict(
            type='PrototypeRectifier', num_classes=3, feat_channels=16))
    config, checkpoint, _ = save_model(cfg, tmp_path, 'mt_rect')
    names_file, _ = split_file(tmp_path)
    written = visualize.main([
        config, checkpoint, '--images', names_file, '--out-dir',
        str(tmp_path / 'vis'), '--iter', '50'
    ])
    for path in written:
        grid = np.array(Image.open(path).convert('RGB'))
        # image, prediction, entropy, reliable, rectified, ground truth.
        assert grid.shape[:2] == (2 * (VIS_SIZE[0] +
                                       visualize.TITLE_HEIGHT),
                                  3 * VIS_SIZE[1])
        # The checkpoint's prototypes are empty, so rectification leaves
        # every label as the teacher predicts it, for the second image too:
        # the tool must not update the model's prototypes between images.
        np.testing.assert_array_equal(panel(grid, 4), panel(grid, 1))
        # --iter 50 of 100: alpha_t = 0.2 * (1 - 50/100) = 0.1.
        assert abs((panel(grid, 3)[..., 0] == 255).mean() - 0.9) < 0.01


def test_visualize_rml_teachers(tmp_path):
    cfg = dict(
        type='DualStudentSegmentor',
        segmentor1=tiny_segmentor_cfg(),
        student1_noise=None,
        student2_noise=None,
        cutmix=None)
    config, checkpoint, _ = save_model(cfg, tmp_path, 'rml')
    names_file, _ = split_file(tmp_path, count=1)
    grids = {}
    for teacher in ('teacher1', 'teacher2'):
        path, = visualize.main([
            config, checkpoint, '--images', names_file, '--out-dir',
            str(tmp_path / teacher), '--teacher', teacher
        ])
        grids[teacher] = grid = np.array(Image.open(path).convert('RGB'))
        # RML's labeler (confidence >= 0) trusts every valid pixel.
        assert (panel(grid, 3) == 255).all()
        # Its rectifier has no prototypes yet: labels = prediction.
        np.testing.assert_array_equal(panel(grid, 4), panel(grid, 1))
    # The two teachers are different networks (separate random heads).
    assert not np.array_equal(
        panel(grids['teacher1'], 1), panel(grids['teacher2'], 1))


def test_visualize_errors_name_the_input(tmp_path):
    config, checkpoint, _ = save_model(tiny_mean_teacher_cfg(), tmp_path,
                                       'mt')
    names_file, _ = split_file(tmp_path)
    with pytest.raises(ValueError, match=r"--teacher 'student' is not one "
                       r"of \['teacher'\]"):
        visualize.main([
            config, checkpoint, '--images', names_file, '--out-dir',
            str(tmp_path), '--teacher', 'student'
        ])
    bad_split = tmp_path / 'bad.txt'
    bad_split.write_text('no_such_image\n')
    with pytest.raises(FileNotFoundError,
                       match=r'no_such_image.png \(listed in .*bad.txt\)'):
        visualize.main([
            config, checkpoint, '--images',
            str(bad_split), '--out-dir',
            str(tmp_path)
        ])
    sup_config = tmp_path / 'sup.py'
    sup_config.write_text(tiny_semi_config_text(tiny_segmentor_cfg()))
    with pytest.raises(ValueError, match='sup.py is not a semi-supervised'):
        visualize.main([
            str(sup_config), checkpoint, '--images', names_file,
            '--out-dir',
            str(tmp_path)
        ])


# ------------------------------------------------------ compare_with_model_zoo
def test_iou_from_areas_skips_absent_classes():
    result = compare.iou_from_areas(
        np.array([2, 0, 0]), np.array([4, 5, 0]), ('a', 'b', 'c'))
    assert result['IoU']['a'] == 50.0 and result['IoU']['b'] == 0.0
    assert math.isnan(result['IoU']['c'])
    assert result['mIoU'] == 25.0  # mean of a and b only


def test_comparison_table_deltas():
    semi = dict(mIoU=50.0, IoU=dict(a=60.0, b=40.0, c=float('nan')))
    sup = dict(mIoU=45.25, IoU=dict(a=50.0, b=42.5, c=float('nan')))
    table = compare.comparison_table(semi, sup, 'semi', 'sup')
    assert table.splitlines() == [
        '| class | semi | sup | delta |',
        '|---|---|---|---|',
        '| **mIoU** | 50.00 | 45.25 | +4.75 |',
        '| a | 60.00 | 50.00 | +10.00 |',
        '| b | 40.00 | 42.50 | -2.50 |',
        '| c | n/a | n/a | n/a |',
    ]
    with pytest.raises(ValueError, match='different classes'):
        compare.comparison_table(semi, dict(mIoU=1.0, IoU=dict(a=1.0)))


def test_compare_semi_model_started_from_plain_checkpoint(tmp_path):
    """A semi model loaded from a plain checkpoint predicts like it."""
    sup_config, sup_checkpoint, _ = save_model(tiny_segmentor_cfg(),
                                               tmp_path, 'sup')
    semi_config, _, _ = save_model(tiny_mean_teacher_cfg(), tmp_path, 'mt')
    out = tmp_path / 'compare.md'
    report = compare.main([
        semi_config, sup_checkpoint, sup_config, sup_checkpoint,
        '--predict-on', 'student', '--out',
        str(out)
    ])
    assert out.read_text() == report
    assert '(2 images)' in report
    rows = [r for r in report.splitlines() if r.startswith('| ')][1:]
    assert len(rows) == 1 + 11  # mIoU + CamVid's classes
    assert rows[0].startswith('| **mIoU** | ')
    assert '| mt (student) | sup | delta |' in report
    for row in rows:
        ours, theirs, delta = row.strip('| ').split(' | ')[1:]
        assert ours == theirs and delta in ('+0.00', '-0.00', 'n/a'), row


def test_compare_rejects_supervised_config_as_semi(tmp_path):
    sup_config, sup_checkpoint, _ = save_model(tiny_segmentor_cfg(),
                                               tmp_path, 'sup')
    with pytest.raises(ValueError, match='sup.py is not a semi-supervised'):
        compare.main(
            [sup_config, sup_checkpoint, sup_config, sup_checkpoint])


def test_runner_load_from_plain_checkpoint_fills_teacher_and_student(
        tmp_path):
    """``load_from`` = a plain mmseg (model-zoo) checkpoint starts semi
    training with both networks equal to it."""
    torch.manual_seed(1)
    plain = MODELS.build(ConfigDict(tiny_segmentor_cfg()))
    path = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': plain.state_dict(), 'meta': {}}, path)
    runner = Runner(
        model=tiny_mean_teacher_cfg(),
        work_dir=str(tmp_path / 'work'),
        load_from=path,
        default_scope='mmseg')
    runner.load_or_resume()
    model = runner.model
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(model.teacher.state_dict()[name], tensor)
        torch.testing.assert_close(model.student.state_dict()[name], tensor)


# ---------------------------------------------------------- camvid benchmark
def write_run(bench, run, test_mious=(), log_spans=()):
    """A fake work dir: test JSONs (oldest first) and training logs, each
    spanning the given seconds (within one minute of 10:00)."""
    work_dir = bench / run
    work_dir.mkdir(parents=True)
    for index, miou in enumerate(test_mious):
        stamp = f'20261121_10{index:02d}00'
        test_dir = work_dir / 'test' / stamp
        test_dir.mkdir(parents=True)
        (test_dir / f'{stamp}.json').write_text(
            json.dumps(dict(aAcc=80.0, mIoU=miou, mAcc=50.0)))
    for index, seconds in enumerate(log_spans):
        stamp = f'2026112{index}_090000'
        run_dir = work_dir / stamp
        run_dir.mkdir()
        minutes, rest = divmod(seconds, 60)
        (run_dir / f'{stamp}.log').write_text(
            '2026/11/21 09:00:00 - mmengine - INFO - start\n'
            'a line without time\n'
            f'2026/11/21 09:{minutes:02d}:{rest:02d} - mmengine - INFO - '
            'Saving checkpoint at 1000 iterations\n')


def test_summarize_benchmark_table(tmp_path):
    bench = tmp_path / 'bench'
    write_run(bench, 'sup_1-8', [40.0], [300, 303])  # resumed: 603 s
    write_run(bench, 'mt_1-8', [30.0, 41.5], [1200])  # newest test counts
    write_run(bench, 'sup_1-4', [42.0], [600])
    write_run(bench, 'u2pl_1-4', [41.0])  # no training log
    write_run(bench, 'rml_1-8', [], [60])  # trained, not tested
    table_file, chart_file = summarize.summarize(
        str(bench), str(tmp_path / 'out'))
    rows = open(table_file).read().splitlines()
    assert rows[2:] == [
        '| method | data, split | test mIoU | delta vs supervised | '
        'training wall time | test mIoU per run | '
        'classes below half of supervised |',
        '|---|---|---|---|---|---|---|',
        '| supervised only | CamVid 1/8 | 40.00 | - | 10.1 min | 40.00 | - |',
        '| supervised only | CamVid 1/4 | 42.00 | - | 10.0 min | 42.00 | - |',
        '| mean teacher | CamVid 1/8 | 41.50 | +1.50 | 20.0 min | 41.50 | - |',
        '| mean teacher | CamVid 1/4 | - | - | - | - | - |',
        '| U2PL | CamVid 1/8 | - | - | - | - | - |',
        '| U2PL | CamVid 1/4 | 41.00 | -1.00 | - | 41.00 | - |',
        '| RML | CamVid 1/8 | - | - | 1.0 min | - | - |',
        '| RML | CamVid 1/4 | - | - | - | - | - |',
    ]
    assert Image.open(chart_file).size == (700, 400)


def test_summarize_averages_repeated_runs(tmp_path):
    bench = tmp_path / 'bench'
    write_run(bench, 'sup_1-8', [40.0], [600])
    write_run(bench, 'sup_1-8_run2', [43.0], [720])
    write_run(bench, 'u2pl_1-8', [44.0], [1200])
    write_run(bench, 'u2pl_1-8_run3', [47.5], [1080])
    write_run(bench, 'u2pl_1-8_run2', [], [60])  # trained, not tested
    write_run(bench, 'u2pl_1-8_paper-noise', [99.0], [60])  # another config
    write_run(bench, 'u2pl_1-8_run10', [45.0])
    table_file, _ = summarize.summarize(str(bench), str(tmp_path / 'out'))
    rows = open(table_file).read().splitlines()
    # sup mean 41.5 over 11 min; U2PL runs in run order 1, 3, 10 (run 2 has
    # no test yet): mean 45.5, delta of the means +4.0; time of the tested
    # runs with logs (1200 and 1080 s; not run 2's 60 s): 19.0 min
    assert ('| supervised only | CamVid 1/8 | 41.50 +- 2.12 | - | 11.0 min | '
            '40.00, 43.00 | - |') in rows
    assert ('| U2PL | CamVid 1/8 | 45.50 +- 1.80 | +4.00 | 19.0 min | '
            '44.00, 47.50, 45.00 | - |') in rows


def write_class_table(bench, run, ious):
    """Add mmseg's per-class table to the run's newest test log."""
    test_dir = sorted((bench / run / 'test').iterdir())[-1]
    rows = ''.join(f'| {name} | {iou:.2f} | 90.0 |\n'
                   for name, iou in ious.items())
    (test_dir / f'{test_dir.name}.log').write_text(
        '2026/12/07 01:00:00 - mmengine - INFO - per class results:\n'
        '+------+-----+-----+\n|  Class | IoU | Acc |\n'
        '+------+-----+-----+\n' + rows + '+------+-----+-----+\n')


def test_summarize_reports_std_ccp_and_collapsed_classes(tmp_path):
    bench = tmp_path / 'bench'
    write_run(bench, 'sup_ccp-1-8', [24.0], [600])
    write_run(bench, 'sup_ccp-1-8_run2', [26.0], [600])
    write_run(bench, 'u2pl_ccp-1-8', [27.0], [1200])
    write_run(bench, 'u2pl_ccp-1-8_run2', [28.0], [1200])
    write_run(bench, 'u2pl_ccp-1-8_run3', [29.0], [1200])
    write_class_table(bench, 'sup_ccp-1-8', dict(background=90.0, bag=4.0))
    write_class_table(bench, 'sup_ccp-1-8_run2', dict(background=92.0,
                                                      bag=6.0))
    write_class_table(bench, 'u2pl_ccp-1-8', dict(background=93.0, bag=2.0))
    write_class_table(bench, 'u2pl_ccp-1-8_run2',
                      dict(background=93.0, bag=2.6))
    write_class_table(bench, 'u2pl_ccp-1-8_run3',
                      dict(background=93.0, bag=5.0))
    assert summarize.read_class_ious(str(bench / 'u2pl_ccp-1-8')) == dict(
        background=93.0, bag=2.0)
    table_file, _ = summarize.summarize(str(bench), str(tmp_path / 'out'))
    rows = open(table_file).read().splitlines()
    # Only the split that ran; std over runs; bag's supervised mean is 5.0,
    # so 2.0 (run 1) is below half of it and 2.6 (run 2) is not.
    assert rows[4] == ('| supervised only | CCP 1/8 | 25.00 +- 1.41 | - | '
                       '10.0 min | 24.00, 26.00 | - |')
    assert ('| U2PL | CCP 1/8 | 28.00 +- 1.00 | +3.00 | 20.0 min | '
            '27.00, 28.00, 29.00 | bag (1/3) |') in rows
    assert not any('CamVid' in row for row in rows)


def test_summarize_counts_redone_iterations_of_a_resumed_run_once(tmp_path):
    """A run stopped at iteration 900 and resumed from its iteration-500
    checkpoint: the first log counts up to its iteration-500 lines only."""
    work_dir = tmp_path / 'bench' / 'mt_1-8'
    first, second = work_dir / '20261121_090000', work_dir / '20261121_100000'
    first.mkdir(parents=True)
    second.mkdir()

    def line(clock, text):
        return f'2026/11/21 {clock} - mmengine - INFO - {text}\n'

    (first / '20261121_090000.log').write_text(
        line('09:00:00', 'start') +
        line('09:05:00', 'Iter(train) [ 500/1000]  lr: 1e-2') +
        line('09:05:30', 'Iter(val) [101/101]    teacher/mIoU: 40.0') +
        line('09:06:00', 'Iter(train) [ 550/1000]  lr: 1e-2') +
        line('09:09:00', 'Iter(train) [ 900/1000]  lr: 1e-2'))
    (second / '20261121_100000.log').write_text(
        line('10:00:00', 'Auto resumed from the latest checkpoint') +
        line('10:00:01', 'resumed epoch: 0, iter: 500') +
        line('10:06:00', 'Iter(train) [1000/1000]  lr: 1e-4'))
    # 330 s up to the iteration-500 validation, then 360 s resumed.
    assert summarize.read_train_seconds(str(work_dir)) == 690
    assert summarize.resumed_iteration(
        str(first / '20261121_090000.log')) is None
    assert summarize.log_span_seconds(
        str(first / '20261121_090000.log')) == 540


def test_summarize_lists_only_compositions_that_ran(tmp_path):
    bench = tmp_path / 'bench'
    write_run(bench, 'sup_1-8', [40.0], [60])
    write_run(bench, 'rml-u2pl_1-8', [44.5], [120])
    write_run(bench, 'mt-pspnet_1-8', [], [60])  # trained, not tested
    table_file, _ = summarize.summarize(str(bench), str(tmp_path / 'out'))
    table = open(table_file).read()
    assert '| RML + U2PL contrastive head | CamVid 1/8 | 44.50 | +4.50 | ' \
        '2.0 min |' in table
    assert 'PSPNet' not in table and 'rectifier' not in table


def test_summarize_errors_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope does not exist'):
        summarize.summarize(str(tmp_path / 'nope'), str(tmp_path))
    write_run(tmp_path / 'bench', 'sup_1-8', [], [60])
    with pytest.raises(FileNotFoundError, match='has no finished run'):
        summarize.summarize(str(tmp_path / 'bench'), str(tmp_path))
    bad = tmp_path / 'bad'
    write_run(bad, 'sup_1-8', [40.0])
    json_file = next((bad / 'sup_1-8' / 'test').glob('*/*.json'))
    json_file.write_text(json.dumps(dict(aAcc=1.0)))
    with pytest.raises(KeyError, match=r'\.json has no "mIoU"'):
        summarize.summarize(str(bad), str(tmp_path))


def test_camvid_benchmark_script_skips_finished_runs(tmp_path):
    bench = tmp_path / 'bench'
    runs = [f'{method}_{split}' for method in ('sup', 'mt', 'u2pl', 'rml')
            for split in ('1-8', '1-4', 'ccp-1-8')]
    for index, run in enumerate(runs):
        write_run(bench, run, [30.0 + index])
    result, calls = run_benchmark_script(tmp_path, bench)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('has test results, skipping') == 12
    # Only the summary ran: nothing was trained or tested again.
    assert [line.split()[0] for line in calls.read_text().splitlines()] == [
        'tools/benchmark/summarize_camvid_benchmark.py']
    rows = (bench / 'results.md').read_text().splitlines()
    # sup_1-4 is run 1 (31.0), rml_1-4 run 10 (40.0); CCP's sup is 32.0.
    assert '| RML | CamVid 1/4 | 40.00 | +9.00 | - | 40.00 | - |' in rows
    assert '| RML | CCP 1/8 | 41.00 | +9.00 | - | 41.00 | - |' in rows
    assert (bench / 'results.png').stat().st_size > 0


FAKE_PYTHON = r'''#!/usr/bin/env bash
# Stands in for python: records train/test calls, fakes their outputs.
echo "$*" >> "$CALLS"
work_dir=
prev=
for arg in "$@"; do
  if [ "$prev" = --work-dir ]; then work_dir=$arg; fi
  prev=$arg
done
case $1 in
  tools/train.py)
    echo "$work_dir/iter_1000.pth" > "$work_dir/last_checkpoint" ;;
  tools/test.py)
    mkdir -p "$work_dir/20261121_100000"
    stamp=20261121_100000
    echo '{"mIoU": 33.0}' > "$work_dir/$stamp/$stamp.json" ;;
  *) exec "$REAL_PYTHON" "$@" ;;
esac
'''


def run_benchmark_script(tmp_path, bench, *args, **env_vars):
    """Run camvid_benchmark.sh on ``bench`` with :data:`FAKE_PYTHON`;
    returns the finished process and the file listing every interpreter
    call it made (train, test, summary), one line each."""
    fake = tmp_path / 'python'
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / 'calls.txt'
    env = dict(
        os.environ, PYTHON=str(fake), REAL_PYTHON=sys.executable,
        CALLS=str(calls), MMSEG_SEMI_CAMVID_ROOT=camvid_root(),
        MMSEG_SEMI_CCP_ROOT=ccp_root(), **env_vars)
    script = osp.join(REPO_ROOT, 'tools', 'benchmark', 'camvid_benchmark.sh')
    result = subprocess.run(['bash', script, str(bench), *args], env=env,
                            capture_output=True, text=True, timeout=120)
    return result, calls


def test_camvid_benchmark_script_trains_missing_runs(tmp_path):
    bench = tmp_path / 'bench'
    write_run(bench, 'sup_1-8', [30.0])
    (bench / 'mt_1-8').mkdir()
    (bench / 'mt_1-8' / 'last_checkpoint').write_text('x/iter_500.pth')
    result, calls = run_benchmark_script(
        tmp_path, bench, '--amp', METHODS='sup mt rml', SPLITS='1-8')
    assert result.returncode == 0, result.stderr
    mt, rml = f'{bench}/mt_1-8', f'{bench}/rml_1-8'
    assert calls.read_text().splitlines()[:4] == [
        'tools/train.py configs/mean_teacher/mean-teacher_deeplabv3plus_'
        f'effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py --work-dir {mt} '
        '--resume --amp',
        'tools/test.py configs/mean_teacher/mean-teacher_deeplabv3plus_'
        f'effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py {mt}/iter_1000.pth '
        f'--work-dir {mt}/test --predict-on teacher',
        'tools/train.py configs/rml/rml_deeplabv3plus_effnetlite0-d16_1xb4-'
        f'1k_camvid-1-8-256x320.py --work-dir {rml} --amp',
        'tools/test.py configs/rml/rml_deeplabv3plus_effnetlite0-d16_1xb4-'
        f'1k_camvid-1-8-256x320.py {rml}/iter_1000.pth --work-dir '
        f'{rml}/test --predict-on teacher1',
    ]
    assert 'TRAIN_WALL_SECONDS' in (bench / 'rml_1-8' /
                                    'train_and_test.log').read_text()
    rows = (bench / 'results.md').read_text().splitlines()
    assert '| mean teacher | CamVid 1/8 | 33.00 | +3.00 | - | 33.00 | - |' \
        in rows
    assert '| RML | CamVid 1/8 | 33.00 | +3.00 | - | 33.00 | - |' in rows


def test_camvid_benchmark_script_repeats_runs(tmp_path):
    bench = tmp_path / 'bench'
    write_run(bench, 'sup_1-8', [30.0])
    result, calls = run_benchmark_script(
        tmp_path, bench, METHODS='sup', SPLITS='1-8', RUNS='3')
    assert result.returncode == 0, result.stderr
    trained = [line.split('--work-dir ')[1]
               for line in calls.read_text().splitlines()
               if line.startswith('tools/train.py')]
    assert trained == [f'{bench}/sup_1-8_run2', f'{bench}/sup_1-8_run3']
    rows = (bench / 'results.md').read_text().splitlines()
    assert ('| supervised only | CamVid 1/8 | 32.00 +- 1.73 | - | - | '
            '30.00, 33.00, 33.00 | - |') in rows
    result, _ = run_benchmark_script(
        tmp_path, bench, METHODS='sup', SPLITS='1-8', RUNS='two')
    assert result.returncode == 1
    assert 'RUNS must be a positive integer, got RUNS=two' in result.stderr


# ------------------------------------------------- bench_iteration_time
def test_iteration_time_rounds_table_uses_within_round_ratios():
    bench = load_tool('benchmark', 'bench_iteration_time.py')

    def result(config, median, rss):
        return dict(config=f'configs/x/{config}.py', median_s=median,
                    mean_s=median, iters=20, peak_rss_mib=rss)

    # The machine is 50% slower in round 2; each round U2PL costs 20%,
    # 10% and 30% more than the mean teacher beside it.
    rounds = [[result('mt', 1.0, 2000), result('u2pl', 1.2, 2500)],
              [result('mt', 1.5, 2100), result('u2pl', 1.65, 2400)],
              [result('mt', 1.0, 2050), result('u2pl', 1.3, 2450)]]
    assert bench.rounds_table(rounds).splitlines() == [
        '| config | median s/iter | vs first | per round | peak memory |',
        '|---|---|---|---|---|',
        '| mt.py | 1.000 | +0.0% | 1.000, 1.500, 1.000 | 2100 MiB RSS |',
        '| u2pl.py | 1.300 | +20.0% | 1.200, 1.650, 1.300 | 2500 MiB RSS |',
    ]


# --------------------------------------------------- pseudo_label_quality
def test_pseudo_label_quality_from_confusion_by_hand():
    tool = load_tool('analysis_tools', 'pseudo_label_quality.py')
    gt = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [1, 1, 2, 0]])
    valid = gt < 3
    confusion = tool.confusion_matrix(gt, pred, valid, 3)
    # rows gt, columns pred: gt 0 -> {0, 1}, gt 1 -> {1, 1},
    # gt 2 -> {1, 1, 2}; the ignored pixel is left out.
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 2, 1]]
    quality = tool.quality_from_confusion(confusion)
    assert quality['accuracy'] == pytest.approx(4 / 7)
    # IoU: class 0 = 1 / (2 + 1 - 1), class 1 = 2 / (2 + 5 - 2),
    # class 2 = 1 / (3 + 1 - 1).
    assert quality['iou'] == pytest.approx([1 / 2, 2 / 5, 1 / 3])
    assert quality['predicted_share'] == pytest.approx([1 / 7, 5 / 7, 1 / 7])
    assert quality['gt_share'] == pytest.approx([2 / 7, 2 / 7, 3 / 7])
    # A class absent from both has no IoU (NaN), not 0.
    empty = tool.quality_from_confusion(
        torch.tensor([[3, 0], [0, 0]]))
    assert empty['iou'][0] == 1.0 and math.isnan(empty['iou'][1])
    report = tool.markdown_report(quality, quality, 1.0, ['a', 'b', 'c'])
    mean = 100 * (1 / 2 + 2 / 5 + 1 / 3) / 3
    assert report.splitlines()[-1] == f'| mean (mIoU) | | | {mean:.2f} |'


def test_split_names_get_the_datasets_image_suffix():
    """A split file lists names without suffix; the tools add the
    dataset's own (CCP's photos are .jpg, CamVid's frames .png)."""
    tool = load_tool('analysis_tools', 'visualize_pseudo_labels.py')
    assert tool.dataset_img_suffix(dict(type='CCPDataset')) == '.jpg'
    assert tool.dataset_img_suffix(dict(type='CamVidDataset')) == '.png'
    assert tool.dataset_img_suffix(
        dict(type='CCPDataset', img_suffix='.webp')) == '.webp'


def test_u2pl_step_breakdown_times_each_part_and_restores_the_model():
    breakdown = load_tool('benchmark', 'bench_u2pl_step_breakdown.py')
    torch.manual_seed(0)
    model = MODELS.build(tiny_u2pl_cfg())
    model.train()
    model.set_train_progress(1, 10)
    inputs, data_samples = tiny_semi_inputs()
    loss_module = model.contrastive_loss
    timer = breakdown.PartTimer()
    with breakdown.patched_parts(model, timer):
        model.loss(inputs, data_samples)
    calls = {label: len(seconds) for label, seconds in timer.seconds.items()}
    # One U2PL step: one teacher forward on the labeled crops, the teacher's
    # representation head on labeled and weak features, one student head
    # call on both, one loss with one push and one negative sampling.
    assert calls == {
        'teacher forward, labeled crops': 1,
        'contrastive loss (all of it)': 1,
        'memory bank push': 1,
        'memory bank sample_negatives': 1,
        'teacher representation heads': 2,
        'student representation head (forward)': 1,
    }
    assert all(t > 0 for seconds in timer.seconds.values() for t in seconds)
    assert all(f >= 0 for faults in timer.faults.values() for f in faults)
    # Leaving the context restores the methods.
    assert 'teacher_on_labeled' not in vars(model.pairs[0])
    for owner in (loss_module, loss_module.memory_bank,
                  model.teacher_rep_head, model.student_rep_head):
        assert not {'forward', 'push', 'sample_negatives'} & set(vars(owner))
    with breakdown.contrastive_off(model):
        losses = model.loss(inputs, data_samples)
    assert 'unsup_loss_contrast' not in losses
    assert 'unsup_loss_ce' in losses
    assert model.pairs[0].contrastive_loss is loss_module

    order = []
    medians = breakdown.alternated_medians(
        [lambda: order.append('mt'), lambda: order.append('u2pl')],
        repeat=2, warmup=1)
    assert order == ['mt', 'u2pl'] * 3
    assert len(medians) == 2 and all(m >= 0 for m in medians)
