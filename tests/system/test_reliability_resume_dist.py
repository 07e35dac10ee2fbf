"""Exact resume and multi-process training of U2PL and RML (issue 6).

1. A U2PL or RML CamVid run (tiny settings of ``tiny_camvid_run_config``)
   stopped after iteration K and resumed to N ends with exactly the state
   of a straight N-iteration run: students, teachers, memory bank and
   prototypes, and the same logged schedules for iterations K+1..N.
2. ``tools/dist_train.sh`` with two CPU processes (gloo): both ranks end
   with identical teachers, memory banks and prototypes, and at every step
   the two ranks drew disjoint unlabeled images.
3. One process on a global batch of 4 and two DDP processes on 2 + 2
   images give the same student gradient: neither U2PL's ``lambda_c`` nor
   the unsupervised weight may be divided by the world size (U2PL's
   reference code divides ``lambda_c``).
"""
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest
import torch
from mmcv.cnn import ConvModule
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import BaseModule, is_model_wrapper
from mmengine.structures import PixelData
from mmseg.registry import HOOKS, MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules
from torch.nn.parallel import DistributedDataParallel

import mmseg_semi  # noqa: F401
from mmseg_semi.models.utils.segmentor_forward import forward_logits
from helpers import (CONFIG_DIR, REPO_ROOT, TESTS_DIR,  # noqa: F401
                     camvid_root, free_port, gloo_group, seg_preprocessor,
                     single_thread, spawn_gloo_workers,
                     tiny_camvid_run_config, tiny_mean_teacher_cfg,
                     tiny_segmentor_cfg)
from test_train_resume import (load_train_tool,  # noqa: F401
                               restore_global_determinism, scalars,
                               state_dict, train)

# The tiny models below resolve their data preprocessors in mmseg's scope.
register_all_modules(init_default_scope=True)

U2PL_CONFIG = osp.join(
    CONFIG_DIR, 'u2pl',
    'u2pl_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')
RML_CONFIG = osp.join(
    CONFIG_DIR, 'rml',
    'rml_deeplabv3plus_effnetlite0-d16_1xb4-1k_camvid-1-8-256x320.py')

#: Per method: its config, the segmentor keys of its model, config lines
#: added to the tiny run, the state the issue names (checkpoint keys) and
#: the schedules it logs.
METHODS = dict(
    u2pl=dict(
        config=U2PL_CONFIG,
        segmentor_keys=('segmentor', ),
        # A 64-key bank wraps within two steps (so the write pointer moves
        # round), and few anchors / negatives keep the loss cheap.
        overrides='model = dict(contrastive_loss=dict(queue_size=64, '
        'num_anchors=8, num_negatives=16))\n',
        state_prefixes=('contrastive_loss.memory_bank.', ),
        schedules=('lr', 'ema_decay', 'unsup_alpha', 'unsup_threshold',
                   'unsup_weight')),
    rml=dict(
        config=RML_CONFIG,
        segmentor_keys=('segmentor1', 'segmentor2'),
        overrides='',
        state_prefixes=('rectifier1.', 'rectifier2.'),
        schedules=('lr', 'ema_decay', 'unsup1_threshold', 'unsup1_weight',
                   'unsup2_threshold', 'unsup2_weight')),
)


@pytest.fixture(scope='module')
def train_tool():
    return load_train_tool()


def write_run_config(tmp_path, method: str, max_iters: int,
                     checkpoint_interval: int = 2) -> str:
    """A tiny CamVid run of ``method``: unsupervised from iteration 1 on,
    no validation (it never changes training: the loop restores the random
    state around it, see test_train_resume)."""
    spec = METHODS[method]
    tiny = tmp_path / f'{method}_tiny.py'
    tiny.write_text(
        tiny_camvid_run_config(
            spec['config'],
            semi=True,
            max_iters=max_iters,
            checkpoint_interval=checkpoint_interval,
            unsup_start_iter=1,
            segmentor_keys=spec['segmentor_keys']))
    config = tmp_path / f'{method}.py'
    config.write_text(f'_base_ = [{str(tiny)!r}]\n' + spec['overrides'] +
                      f'train_cfg = dict(val_begin={max_iters + 1})\n')
    return str(config)


def with_hooks(tmp_path, config: str, name: str, *hooks: dict) -> str:
    """``config`` with ``hooks`` appended to its custom hooks."""
    existing = Config.fromfile(config).to_dict()['custom_hooks']
    assert [h['type'] for h in existing] == [
        'EMATeacherHook', 'ClassCollapseGuardHook'
    ]
    path = tmp_path / f'{name}.py'
    path.write_text(f'_base_ = [{config!r}]\n'
                    f'custom_hooks = {existing + list(hooks)!r}\n')
    return str(path)


def train_records(work_dir, steps):
    """Logged training scalars (not validation) of the given steps."""
    records = [r for r in scalars(work_dir) if 'lr' in r]
    return [r for r in records if r['step'] in steps]


def method_state(weights: dict, method: str) -> dict:
    prefixes = METHODS[method]['state_prefixes']
    return {k: v for k, v in weights.items() if k.startswith(prefixes)}


# ------------------------------------------------------------ 1. resume
@pytest.mark.parametrize('method', ['u2pl', 'rml'])
def test_resume_matches_uninterrupted_run(tmp_path, train_tool, method):
    k, n = 2, 4
    config = write_run_config(tmp_path, method, max_iters=n,
                              checkpoint_interval=k)
    interrupted = with_hooks(tmp_path, config, 'interrupted',
                             dict(type='StopTrainingAfter', iters=k))
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    # Run names are mmengine instance names (message hub, visualizer): a
    # name used twice in one process would reuse the earlier run's ones.
    train(train_tool, config, straight, f'{method}_straight')
    train(train_tool, interrupted, resumed, f'{method}_part1')
    assert osp.isfile(resumed / f'iter_{k}.pth')
    assert not osp.exists(resumed / f'iter_{n}.pth')
    halfway = state_dict(resumed / f'iter_{k}.pth')['state_dict']
    train(train_tool, config, resumed, f'{method}_part2', '--resume')

    final = {}
    for name, work_dir in (('straight', straight), ('resumed', resumed)):
        checkpoint = state_dict(work_dir / f'iter_{n}.pth')
        assert checkpoint['meta']['iter'] == n
        final[name] = checkpoint['state_dict']
    a, b = final['straight'], final['resumed']
    assert set(a) == set(b)
    teachers = [key for key in a if key.startswith('teacher')]
    assert any('running_var' in key for key in teachers)
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f'{len(different)} tensors differ: {different[:5]}'

    # The method's own state is checkpointed, was already in use before the
    # interruption, and changed after the resume (so equality above is not
    # that of untouched buffers).
    before, after = method_state(halfway, method), method_state(b, method)
    if method == 'u2pl':
        prefix = 'contrastive_loss.memory_bank.'
        assert set(before) == {prefix + name
                               for name in ('keys', 'ptr', 'count')}
        assert before[prefix + 'count'].sum() > 0
        # Full queues whose pointer has left slot 0: the ring has wrapped.
        assert (after[prefix + 'count'] == 64).any()
        assert after[prefix + 'ptr'].any()
        assert not torch.equal(before[prefix + 'keys'],
                               after[prefix + 'keys'])
    else:
        for index in (1, 2):
            prefix = f'rectifier{index}.'
            assert {prefix + name for name in (
                'prototypes', 'prototype_initialised', 'class_prior')
                    } <= set(before)
            assert before[prefix + 'prototype_initialised'].any()
            assert not torch.equal(before[prefix + 'prototypes'],
                                   after[prefix + 'prototypes'])

    # Iterations k+1..n log the same schedules, and the same losses and
    # statistics (everything but timings).
    steps = range(k + 1, n + 1)
    logged = {
        name: train_records(work_dir, steps)
        for name, work_dir in (('straight', straight), ('resumed', resumed))
    }
    assert [r['step'] for r in logged['resumed']] == list(steps)
    assert [r['step'] for r in logged['straight']] == list(steps)
    for key in METHODS[method]['schedules']:
        values = [r[key] for r in logged['straight']]
        assert values == [r[key] for r in logged['resumed']], key
    for one, other in zip(logged['straight'], logged['resumed']):
        timings = ('time', 'data_time')
        assert {k: v for k, v in one.items() if k not in timings} == \
            {k: v for k, v in other.items() if k not in timings}
    # By hand: the EMA ramp min(1 - 1/(j+1), 0.99), j counted from the end
    # of the warm-up (iteration index 1); U2PL's alpha_t = 0.2 (1 - t/n).
    decays = [r['ema_decay'] for r in logged['resumed']]
    assert decays == pytest.approx([1 / 2, 2 / 3])
    if method == 'u2pl':
        alphas = [r['unsup_alpha'] for r in logged['resumed']]
        assert alphas == pytest.approx([0.2 * (1 - t / n) for t in (2, 3)])


# ----------------------------------------------------- 2. two processes
@HOOKS.register_module(force=True)
class DumpRankState(Hook):
    """Test-only: each rank records the unlabeled images of every step and,
    at the end, writes them with its model's state to ``rank<r>.pth``."""

    priority = 'LOWEST'  # after the EMA hook's update

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.unlabeled_paths = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        samples = data_batch['unlabeled']['data_samples']
        weak = [sample.img_path for sample in samples['weak']]
        assert weak == [sample.img_path for sample in samples['strong']]
        self.unlabeled_paths.append(weak)

    def after_train(self, runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        torch.save(
            dict(state=model.state_dict(), unlabeled=self.unlabeled_paths),
            osp.join(self.out_dir, f'rank{get_rank()}.pth'))


def dist_train(config: str, work_dir, timeout: int = 600) -> str:
    """Two CPU processes through tools/dist_train.sh; returns the output."""
    env = dict(
        os.environ,
        PORT=str(free_port()),
        PYTHON=sys.executable,
        # The training processes import this module for DumpRankState
        # (it imports helpers from tests/ and test_train_resume from here).
        PYTHONPATH=os.pathsep.join(
            [osp.dirname(osp.abspath(__file__)), TESTS_DIR]),
        OMP_NUM_THREADS='1',
        MKL_NUM_THREADS='1',
        MMSEG_SEMI_CAMVID_ROOT=camvid_root())
    process = subprocess.Popen(
        ['bash',
         osp.join(REPO_ROOT, 'tools', 'dist_train.sh'), config, '2',
         '--work-dir', str(work_dir)],
        cwd=str(work_dir.parent),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Killing bash alone would leave torchrun and its trainers running.
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f'dist_train.sh ran over {timeout} s:\n{output[-4000:]}')
    assert process.returncode == 0, output[-4000:]
    return output


@pytest.mark.parametrize('method', ['u2pl', 'rml'])
def test_two_processes_hold_identical_state(tmp_path, method):
    max_iters = 3
    dump_dir = tmp_path / 'dump'
    dump_dir.mkdir()
    config = write_run_config(tmp_path, method, max_iters=max_iters,
                              checkpoint_interval=max_iters)
    config = with_hooks(tmp_path, config, 'dumping',
                        dict(type='DumpRankState', out_dir=str(dump_dir)))
    with open(config, 'a') as f:
        f.write("custom_imports = dict(imports=['mmseg_semi', "
                f"{__name__!r}], allow_failed_imports=False)\n")
    output = dist_train(config, tmp_path / 'work')
    assert 'Distributed training: True' in output
    ranks = [state_dict(dump_dir / f'rank{r}.pth') for r in (0, 1)]
    state0, state1 = ranks[0]['state'], ranks[1]['state']
    assert set(state0) == set(state1)

    # Teachers (parameters and BN statistics), and the memory bank or the
    # prototypes, are identical on both ranks.
    shared = [key for key in state0 if key.startswith('teacher')]
    shared += list(method_state(state0, method))
    assert len(shared) > 100
    different = [k for k in shared if not torch.equal(state0[k], state1[k])]
    assert not different, f'{len(different)} differ: {different[:5]}'
    # The class-balance estimates are summed over ranks: one value on both.
    balances = [key for key in state0 if key.startswith('class_balance')]
    assert any(key.endswith('teacher_initialised') and state0[key]
               for key in balances)
    assert all(torch.equal(state0[k], state1[k]) for k in balances)
    own = method_state(state0, method)
    if method == 'u2pl':
        assert own['contrastive_loss.memory_bank.count'].sum() > 0
    else:
        assert own['rectifier1.prototype_initialised'].any()
        assert own['rectifier2.prototype_initialised'].any()
    # The students' BN statistics are per rank (plain BN on CPU, buffers
    # not broadcast): the ranks trained on different images, and the
    # teachers agree because the EMA hook averages their buffers.
    student_stats = [key for key in state0
                     if key.startswith('student') and 'running_mean' in key]
    assert any(not torch.equal(state0[k], state1[k]) for k in student_stats)

    # Every step, each rank drew its own 2 unlabeled images, none shared.
    paths0, paths1 = ranks[0]['unlabeled'], ranks[1]['unlabeled']
    assert len(paths0) == len(paths1) == max_iters
    for step, (mine, theirs) in enumerate(zip(paths0, paths1)):
        assert len(set(mine)) == len(set(theirs)) == 2, step
        assert not set(mine) & set(theirs), f'step {step}: {mine} {theirs}'


# ------------------------------------------- 3. gradients, 1 vs 2 ranks
NUM_CLASSES = 3
REP_CHANNELS = 4
CONTRAST_WEIGHT = 0.5
UNSUP_WEIGHT = 0.7


@MODELS.register_module(force=True)
class PixelwiseBackbone(BaseModule):
    """Test-only backbone: Conv1x1-ReLU. On 1x1 images a deep backbone
    sees only its kernels' centre taps and its features die out."""

    def __init__(self, in_channels: int = 3, channels: int = 8):
        super().__init__()
        self.layer = ConvModule(in_channels, channels, 1)

    def forward(self, inputs):
        return (self.layer(inputs), )


def gradient_model_cfg(contrast_weight: float = CONTRAST_WEIGHT,
                       unsup_weight: float = UNSUP_WEIGHT) -> dict:
    """Tiny U2PL, made deterministic by 1x1 images.

    With 1x1 images every image has a single pixel, so all anchors of a
    class share one representation (anchor sampling cannot matter), and a
    one-key queue keeps the newest negative of each class, which is the
    same key whether the keys arrive from one process or gathered in rank
    order. The entropy labeler's batch quantile (alpha 0.5) marks the
    higher-entropy unlabeled image unreliable in a batch of 2 or 4.
    """
    segmentor = tiny_segmentor_cfg(NUM_CLASSES)
    segmentor['data_preprocessor'] = seg_preprocessor(size_divisor=None)
    segmentor['backbone'] = dict(type='PixelwiseBackbone', channels=8)
    # No BN: over the 2 pixels of a 2-image batch it only keeps signs, and
    # its gradients would be round-off.
    segmentor['decode_head'].update(
        in_channels=8, kernel_size=1, norm_cfg=None)
    return tiny_mean_teacher_cfg(
        segmentor=segmentor,
        pseudo_labeler=dict(
            type='EntropyPseudoLabeler',
            alpha_0=0.5,
            schedule='constant',
            class_wise=False),
        class_balance=None,
        unsup_weight=unsup_weight,
        rep_head=dict(
            type='RepresentationHead',
            in_channels=16,
            channels=REP_CHANNELS,
            num_convs=1,
            dropout_ratio=0.0,
            norm_cfg=None),
        contrastive_loss=dict(
            type='U2PLContrastiveLoss',
            num_classes=NUM_CLASSES,
            feat_channels=REP_CHANNELS,
            num_anchors=4,
            num_negatives=4,
            anchor_prob_threshold=0.0,
            queue_size=1,
            loss_weight=contrast_weight))


def build_gradient_model(weights: dict, **kwargs):
    model = MODELS.build(gradient_model_cfg(**kwargs))
    model.load_state_dict(weights)
    model.train()
    return model


def pixel_samples(labels):
    """1x1 data samples; ``labels`` None for unlabeled images."""
    out = []
    for label in labels:
        sample = SegDataSample()
        sample.set_metainfo(dict(img_shape=(1, 1), pad_shape=(1, 1)))
        if label is not None:
            sample.gt_sem_seg = PixelData(
                data=torch.full((1, 1, 1), label, dtype=torch.long))
        out.append(sample)
    return out


def local_batch(data: dict, copies: int):
    """``copies`` concatenated copies of the 2 labeled + 2 unlabeled images.

    copies=2 is the global batch of 4 (a, b, a, b); copies=1 is one rank's
    half of it.
    """
    inputs = {
        branch: torch.cat([data[branch]] * copies)
        for branch in ('labeled', 'weak', 'strong')
    }
    data_samples = dict(
        labeled=pixel_samples(data['labels'] * copies),
        weak=pixel_samples([None] * 2 * copies),
        strong=pixel_samples([None] * 2 * copies))
    return inputs, data_samples


def student_gradients(model, losses: dict) -> dict:
    loss, _ = model.parse_losses(losses)
    loss.backward()
    return {
        name: param.grad.clone()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def _ddp_gradient_worker(rank, world_size, init_method, work_dir):
    with gloo_group(rank, world_size, init_method):
        torch.set_num_threads(1)
        data = torch.load(osp.join(work_dir, 'data.pth'))
        model = build_gradient_model(data['weights'])
        ddp = DistributedDataParallel(model)
        inputs, data_samples = local_batch(data, copies=1)
        losses = ddp(inputs, data_samples, mode='loss')
        grads = student_gradients(model, losses)
        torch.save(
            dict(grads=grads, bank=model.contrastive_loss.memory_bank
                 .state_dict()),
            osp.join(work_dir, f'grads{rank}.pth'))


def gradient_test_data() -> dict:
    """Weights, 1x1 images and labels that exercise every U2PL term.

    The labeled images get the two classes that are not the reliable
    unlabeled image's pseudo-label, so every class has anchors from exactly
    one image.
    """
    torch.manual_seed(0)
    model = MODELS.build(gradient_model_cfg())
    images = {
        branch: torch.randn(2, 3, 1, 1) * 2
        for branch in ('labeled', 'weak', 'strong')
    }
    with torch.no_grad():
        logits, _ = forward_logits(model.teacher, images['weak'])
    probs = logits.softmax(dim=1)
    entropy = -(probs * probs.log()).sum(dim=1).flatten()
    reliable = int(entropy.argmin())
    pseudo_label = int(probs[reliable].flatten().argmax())
    labels = [(pseudo_label + 1) % NUM_CLASSES,
              (pseudo_label + 2) % NUM_CLASSES]
    return dict(images, labels=labels, weights=model.state_dict())


def test_ddp_gradient_equals_one_process_gradient(tmp_path):
    data = gradient_test_data()
    torch.save(data, tmp_path / 'data.pth')

    def one_process(**weights):
        model = build_gradient_model(data['weights'], **weights)
        losses = model.loss(*local_batch(data, copies=2))
        return model, losses, student_gradients(model, losses)

    model, losses, expected = one_process()
    # Both terms are active: pseudo-labels on the reliable image, and an
    # InfoNCE with anchors and a queued negative.
    assert losses['unsup_loss_ce'] > 0
    assert losses['unsup_loss_contrast'] > 0
    assert losses['unsup_reliable_ratio'] == 0.5

    spawn_gloo_workers(_ddp_gradient_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f'grads{r}.pth') for r in (0, 1)]
    assert set(ranks[0]['grads']) == set(expected)
    for name, grad in expected.items():
        for rank in ranks:
            torch.testing.assert_close(
                rank['grads'][name], grad, rtol=1e-4, atol=1e-7,
                msg=lambda m, name=name: f'{name}: {m}')
    # Both ranks' one-key queues hold the one-process newest negatives.
    bank = model.contrastive_loss.memory_bank.state_dict()
    assert bank['count'].sum() > 0
    for rank in ranks:
        assert torch.equal(rank['bank']['count'], bank['count'])
        torch.testing.assert_close(rank['bank']['keys'], bank['keys'])

    # The comparison can tell: dividing lambda_c or the unsupervised weight
    # by the world size, as U2PL's reference code does for lambda_c, would
    # halve the representation head's gradient or change the classifier's.
    *_, divided_contrast = one_process(contrast_weight=CONTRAST_WEIGHT / 2)
    *_, divided_unsup = one_process(unsup_weight=UNSUP_WEIGHT / 2)
    ddp = ranks[0]['grads']
    rep = 'student_rep_head.projection.weight'
    assert ddp[rep].abs().max() > 1e-4
    torch.testing.assert_close(divided_contrast[rep], ddp[rep] / 2)
    classifier = 'student.decode_head.conv_seg.weight'
    assert (divided_unsup[classifier] - ddp[classifier]).abs().max() > 1e-3
