"""demo/image_demo.py on a real CamVid image with the CamVid mean teacher."""
import os
import os.path as osp

import mmcv
import numpy as np
import pytest

import mmseg_semi  # noqa: F401
from helpers import (MEAN_TEACHER_CONFIG, REPO_ROOT,  # noqa: F401
                     SUPERVISED_CONFIG, camvid_mean_teacher_checkpoint,
                     camvid_root, load_script, single_thread)
from mmseg.apis import inference_model


def load_demo():
    return load_script('demo', 'image_demo.py', name='_mmseg_semi_image_demo')


def test_image_demo_writes_the_overlay_and_a_legend(tmp_path, capsys):
    demo = load_demo()
    checkpoint = camvid_mean_teacher_checkpoint(str(tmp_path / 'semi.pth'))
    image_file = osp.join(
        camvid_root(), 'test',
        sorted(os.listdir(osp.join(camvid_root(), 'test')))[0])
    out_file = str(tmp_path / 'out' / 'seg.png')
    written = demo.main([
        image_file, MEAN_TEACHER_CONFIG, checkpoint, '--out-file', out_file,
        '--device', 'cpu', '--opacity', '0.6', '--predict-on', 'student'
    ])
    assert written == out_file

    model = demo.load_model(MEAN_TEACHER_CONFIG, checkpoint, 'cpu',
                            'student')
    labels = inference_model(model, image_file).pred_sem_seg.data[0].numpy()
    model.predict_on = 'teacher'
    teacher = inference_model(model, image_file).pred_sem_seg.data[0]
    assert not np.array_equal(teacher.numpy(), labels)  # the flag matters
    palette = np.asarray(model.dataset_meta['palette'], np.uint8)
    image = mmcv.imread(image_file, channel_order='rgb')
    drawn = mmcv.imread(out_file, channel_order='rgb')
    height, width = image.shape[:2]
    assert drawn.shape[0] >= height and drawn.shape[1] > width
    # The image part: the student's classes blended at 60%.
    expected = np.round(0.4 * image + 0.6 * palette[labels].astype(float))
    assert np.array_equal(drawn[:height, :width], expected.astype(np.uint8))
    # The legend: a full swatch of each present class's colour, none of the
    # others' (anti-aliased text never fills a swatch).
    legend = drawn[:, width:]
    present = set(np.unique(labels).tolist())
    assert len(present) > 1
    for index, colour in enumerate(palette):
        count = int(np.all(legend == colour, axis=-1).sum())
        if index in present:
            assert count >= demo.SWATCH**2, model.dataset_meta['classes'][
                index]
        else:
            assert count < demo.SWATCH**2
    printed = capsys.readouterr().out
    classes = model.dataset_meta['classes']
    for index in present:
        assert classes[index] in printed


def test_legend_lists_present_classes_largest_first():
    demo = load_demo()
    labels = np.array([[2, 2, 2], [0, 2, 0]])
    palette = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    entries = demo.legend_entries(labels, ['a', 'b', 'c'], palette)
    assert entries == [('c', (7, 8, 9), pytest.approx(400 / 6)),
                       ('a', (1, 2, 3), pytest.approx(200 / 6))]
    # More rows than the image is tall: the canvas grows, padded white.
    canvas = demo.render(
        np.zeros((2, 3, 3), np.uint8), labels, palette, entries, 1.0)
    assert canvas.shape[0] == 2 * demo.MARGIN + 2 * demo.ROW
    assert (canvas[2:, :3] == 255).all()
    assert np.array_equal(canvas[:2, :3], palette[labels])


def test_image_demo_refuses_bad_arguments(tmp_path):
    demo = load_demo()
    with pytest.raises(SystemExit):
        demo.parse_args(['i.png', 'c.py', 'k.pth', '--opacity', '0'])
    with pytest.raises(ValueError, match='not a semi-supervised config'):
        demo.load_model(SUPERVISED_CONFIG, None, 'cpu', 'teacher')
