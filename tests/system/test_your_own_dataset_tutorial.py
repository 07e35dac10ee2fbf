"""docs/tutorials/your_own_dataset.md, run as written: its folders built
with random images, its config files (the ``# file:`` blocks) written
verbatim, its check command trained, its visualisation and export commands
run on the result, and its U2PL and RML configs built."""
import os
import os.path as osp
import re
import shlex

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import mmseg_semi  # noqa: F401
from helpers import load_script, REPO_ROOT, single_thread  # noqa: F401
from mmseg.registry import DATASETS, MODELS

TUTORIAL = osp.join(REPO_ROOT, 'docs', 'tutorials', 'your_own_dataset.md')
FILE_MARK = '# file: '
CONFIG_DIR = 'configs/my_project'
MEAN_TEACHER = (f'{CONFIG_DIR}/mean-teacher_deeplabv3plus_effnetlite0-d16_'
                '1xb4-1k_my-data-256x256.py')
U2PL = f'{CONFIG_DIR}/u2pl_deeplabv3plus_effnetlite0-d16_1xb4-1k_my-data-256x256.py'  # noqa: E501
RML = f'{CONFIG_DIR}/rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_my-data-256x256.py'  # noqa: E501
CLASSES = ('background', 'crop', 'weed')
#: Images of the tutorial's tree: (folder, name) -> (height, width).
LABELED = {
    ('train', 'field_001'): (120, 160),
    ('train', 'field_002'): (100, 150),
    ('train', 'field_003'): (120, 160),
    ('val', 'field_101'): (90, 120),
    ('val', 'field_102'): (90, 120),
}
UNLABELED = ('drone_2024/IMG_0001.JPG', 'scan_17.png')
#: Test-only overrides on top of the documented check command: no worker
#: processes, small batches, a log line per iteration.
FAST = [
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.batch_size=2',
    'train_cfg.unlabeled_dataloader.num_workers=0',
    'train_cfg.unlabeled_dataloader.persistent_workers=False',
    'train_cfg.unlabeled_dataloader.batch_size=2',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'default_hooks.logger.interval=1',
]


def tutorial_text() -> str:
    with open(TUTORIAL) as file:
        return file.read()


def tutorial_files() -> dict:
    """path -> text of every ``python`` block that starts with
    ``# file: <path>``."""
    files = {}
    for block in re.findall(r'```python\n(.*?)```', tutorial_text(), re.S):
        first_line = block.split('\n', 1)[0]
        if first_line.startswith(FILE_MARK):
            files[first_line[len(FILE_MARK):].strip()] = block
    return files


def documented_command(script: str) -> list:
    """Arguments after ``script`` in the tutorial's first command that runs
    it, continuation lines joined, ``$CONFIG`` expanded."""
    for block in re.findall(r'```bash\n(.*?)```', tutorial_text(), re.S):
        for command in block.replace('\\\n', ' ').splitlines():
            words = shlex.split(command, comments=True)
            if script in words:
                words = words[words.index(script) + 1:]
                return [MEAN_TEACHER if word == '$CONFIG' else word
                        for word in words]
    raise AssertionError(f'{TUTORIAL} runs no {script}')


def load_tool(*parts):
    return load_script('tools', *parts)


def write_image(path, height, width, rng, fmt='PNG'):
    os.makedirs(osp.dirname(path), exist_ok=True)
    pixels = rng.randint(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)


def build_tutorial_project(root):
    """The tutorial's folders (random images, masks of the three classes
    and ignored pixels, decoys in the unlabeled folder) and config files,
    with the repository's config bases at configs/_base_."""
    rng = np.random.RandomState(0)
    data = osp.join(root, 'data', 'my_data')
    for (split, name), (height, width) in LABELED.items():
        write_image(osp.join(data, 'images', split, name + '.png'), height,
                    width, rng)
        mask = np.zeros((height, width), np.uint8)
        mask[:, width // 3:] = 1
        mask[height // 2:, 2 * width // 3:] = 2
        mask[:4] = 255
        os.makedirs(osp.join(data, 'masks', split), exist_ok=True)
        Image.fromarray(mask).save(
            osp.join(data, 'masks', split, name + '_mask.png'))
    for name in UNLABELED:
        write_image(osp.join(data, 'unlabeled', name), 110, 140, rng,
                    'JPEG' if name.endswith('.JPG') else 'PNG')
    # Not images: skipped by UnlabeledImageFolderDataset.
    for decoy in ('.DS_Store', 'drone_2024/._IMG_0001.JPG', 'notes.txt'):
        with open(osp.join(data, 'unlabeled', decoy), 'wb') as file:
            file.write(b'\x00\x05')
    os.makedirs(osp.join(root, CONFIG_DIR))
    os.symlink(osp.join(REPO_ROOT, 'configs', '_base_'),
               osp.join(root, 'configs', '_base_'))
    for path, text in tutorial_files().items():
        with open(osp.join(root, path), 'w') as file:
            file.write(text)


@pytest.fixture
def project(tmp_path, monkeypatch):
    build_tutorial_project(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    init_default_scope('mmseg')
    return tmp_path


def test_tutorial_writes_the_data_and_method_configs():
    assert sorted(tutorial_files()) == sorted(
        [f'{CONFIG_DIR}/my_data.py', MEAN_TEACHER, U2PL, RML])


def test_documented_run_folder_is_where_train_py_writes():
    (run, ) = re.findall(r'^RUN=(\S+)$', tutorial_text(), re.M)
    assert run == osp.join('work_dirs',
                           osp.splitext(osp.basename(MEAN_TEACHER))[0])


def test_tutorial_datasets_read_the_documented_tree(project):
    cfg = Config.fromfile(MEAN_TEACHER)
    labeled = DATASETS.build(cfg.train_dataloader.dataset)
    assert labeled.metainfo['classes'] == CLASSES
    assert [osp.basename(labeled.get_data_info(i)['seg_map_path'])
            for i in range(len(labeled))] == [
                'field_001_mask.png', 'field_002_mask.png',
                'field_003_mask.png']
    mask = labeled[0]['data_samples'].gt_sem_seg.data
    assert set(mask.unique().tolist()) <= {0, 1, 2, 255}
    unlabeled = DATASETS.build(cfg.train_cfg.unlabeled_dataloader.dataset)
    assert [
        osp.relpath(unlabeled.get_data_info(i)['img_path'],
                    osp.join('data', 'my_data', 'unlabeled'))
        for i in range(len(unlabeled))
    ] == list(UNLABELED)
    sample = unlabeled[0]
    assert set(sample['inputs']) == {'weak', 'strong'}
    assert 'gt_sem_seg' not in sample['data_samples']['weak']


def test_tutorial_trains_evaluates_visualises_and_exports(project):
    train = load_tool('train.py')
    args = documented_command('tools/train.py')
    assert '--cfg-options' in args
    train.main(args + FAST)

    work_dir = 'work_dirs/my_data_check'
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(checkpoint)
    (run, ) = [name for name in os.listdir(work_dir)
               if osp.isdir(osp.join(work_dir, name))]
    # The run's own log (the scalar file belongs to mmseg's one visualizer
    # instance per process, which an earlier test may have created).
    with open(osp.join(work_dir, run, run + '.log')) as file:
        log = file.read()
    # Iteration 2 learned from the unlabeled images (warm-up ended at 1).
    (last_step, ) = re.findall(r'Iter\(train\) \[2/2\].*', log)
    assert 'unsup_loss_ce' in last_step
    (val, ) = [line for line in re.findall(r'Iter\(val\) .*', log)
               if 'teacher/mIoU' in line]
    assert 'student/mIoU' in val

    real_run = '$RUN/iter_1000.pth'
    visualize = load_tool('analysis_tools', 'visualize_pseudo_labels.py')
    vis_args = documented_command(
        'tools/analysis_tools/visualize_pseudo_labels.py')
    assert real_run in vis_args
    written = visualize.main(
        [checkpoint if arg == real_run else arg for arg in vis_args])
    assert written == [osp.join('work_dirs', 'my_vis', 'scan_17.png')]
    assert Image.open(written[0]).size[0] > 0

    export = load_tool('model_converters', 'export_semi_checkpoint.py')
    export_args = documented_command(
        'tools/model_converters/export_semi_checkpoint.py')
    outputs = export.main(
        [checkpoint if arg == real_run else arg for arg in export_args])
    assert all(osp.isfile(path) for path in outputs.values())
    exported = Config.fromfile(
        [path for path in outputs.values() if path.endswith('.py')][0])
    assert exported.model.decode_head.num_classes == len(CLASSES)


@pytest.mark.parametrize('config', [U2PL, RML])
def test_tutorial_u2pl_and_rml_models_have_the_classes(project, config):
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    for teacher, student in model.teacher_student_names:
        pair = model.pair_of(teacher)
        assert pair.student.decode_head.num_classes == len(CLASSES)
        assert pair.teacher.decode_head.num_classes == len(CLASSES)
        if config == U2PL:
            assert pair.contrastive_loss.num_classes == len(CLASSES)
