"""Composition configs (configs/composition/) and RML students with U2PL's
contrastive head.

Unit tests on tiny models check the DualStudentSegmentor extension: each
student's contrastive loss reads its own teacher only, reaches its own
representation head only, and keeps its own memory bank in the state dict.
End-to-end tests train every composition config for 2 iterations on the
real CamVid (64x64 crops) through tools/train.py.
"""
import copy
import glob
import json
import math
import os.path as osp

import pytest
import torch
from helpers import (CONFIG_DIR, REPO_ROOT, load_script,  # noqa: F401
                     seg_preprocessor, single_thread, tiny_camvid_run_config,
                     tiny_contrastive_loss_cfg, tiny_rep_head_cfg,
                     tiny_segmentor_cfg, tiny_semi_inputs)
from mmengine.config import Config, ConfigDict
from mmengine.hooks import Hook
from mmseg.registry import HOOKS, MODELS
from mmseg.utils import register_all_modules

import mmseg_semi  # noqa: F401
from mmseg_semi.models.utils.contrastive_functional import resize_pixel_maps
from mmseg_semi.models.utils.segmentor_forward import forward_logits
from mmseg_semi.utils import adapt_config_to_device

register_all_modules(init_default_scope=True)

COMPOSITION_DIR = osp.join(CONFIG_DIR, 'composition')
RML_U2PL = osp.join(
    COMPOSITION_DIR, 'rml_u2pl-contrast_deeplabv3plus_effnetlite0-d16_'
    '1xb4-1k_camvid-1-8-256x320.py')
U2PL_RECTIFIER = osp.join(
    COMPOSITION_DIR, 'u2pl_prototype-rectifier_deeplabv3plus_effnetlite0-'
    'd16_1xb4-1k_camvid-1-8-256x320.py')
MEAN_TEACHER_SEGFORMER = osp.join(
    COMPOSITION_DIR,
    'mean-teacher_segformer_mit-b0_1xb4-1k_camvid-1-8-256x320.py')
FROM_MMSEG = osp.join(
    COMPOSITION_DIR,
    'semi-from-mmseg_pspnet_r18-d8_1xb4-1k_camvid-1-8-256x320.py')
NUM_CLASSES = 3
SIZE = 32
REP = 8


# ------------------------------------------------------------ tiny models
def tiny_dual_u2pl_cfg(**kwargs) -> ConfigDict:
    """Two tiny FCN students with a U2PL head each, an entropy labeler, no
    rectifier, noise, class balance or CutMix (added per test)."""
    cfg = dict(
        type='DualStudentSegmentor',
        segmentor1=tiny_segmentor_cfg(NUM_CLASSES),
        student1_noise=None,
        student2_noise=None,
        rectifier=None,
        class_balance=None,
        pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
        cutmix=None,
        rep_head=tiny_rep_head_cfg(channels=REP),
        contrastive_loss=tiny_contrastive_loss_cfg(feat_channels=REP))
    cfg.update(kwargs)
    # ConfigDict: mmseg reads test_cfg.mode as an attribute.
    return ConfigDict(copy.deepcopy(cfg))


def build(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    return model


def semi_batch(batch=2):
    return tiny_semi_inputs(batch, seed=0, size=SIZE)


class CallRecorder:
    """Forward hooks keeping the outputs (and keyword inputs) of modules."""

    def __init__(self, **modules):
        self.outputs = {name: [] for name in modules}
        self.kwargs = {name: [] for name in modules}
        self.handles = [
            module.register_forward_hook(
                self._hook(name), with_kwargs=True)
            for name, module in modules.items()
        ]

    def _hook(self, name):

        def hook(module, args, kwargs, output):
            self.outputs[name].append(output.detach().clone())
            self.kwargs[name].append(
                {k: v.detach().clone()
                 for k, v in kwargs.items()})

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


# ------------------------------------------------ DualStudent + U2PL head
def test_each_student_gets_its_own_rep_heads_losses_and_banks():
    model = build(tiny_dual_u2pl_cfg())
    assert model.with_contrastive
    heads = [
        model.student1_rep_head, model.teacher1_rep_head,
        model.student2_rep_head, model.teacher2_rep_head
    ]
    assert len({id(head) for head in heads}) == 4
    assert model.contrastive_loss1 is not model.contrastive_loss2
    assert model.contrastive_loss1.memory_bank is not \
        model.contrastive_loss2.memory_bank
    # num_classes and in_channels come from the students.
    assert model.contrastive_loss1.num_classes == NUM_CLASSES
    assert model.student1_rep_head.in_channels == 16
    pairs = model.teacher_student_pairs()
    assert pairs == [
        (model.teacher1, model.student1),
        (model.teacher1_rep_head, model.student1_rep_head),
        (model.teacher2, model.student2),
        (model.teacher2_rep_head, model.student2_rep_head)
    ]
    # init_weights starts every EMA pair equal.
    for teacher, student in pairs:
        for (name, t), s in zip(teacher.state_dict().items(),
                                student.state_dict().values()):
            assert torch.equal(t, s), name
    # Teachers' heads stay frozen in eval mode through model.train().
    assert not model.teacher1_rep_head.training
    assert model.student2_rep_head.training
    assert all(not p.requires_grad
               for p in model.teacher2_rep_head.parameters())
    # Prediction still sees the two segmentor teachers only.
    assert model.segmentor_teachers() == [model.teacher1, model.teacher2]
    model.predict_on = 'ensemble'
    logits = model(semi_batch()[0]['labeled'], mode='tensor')
    assert logits.shape == (2, NUM_CLASSES, SIZE, SIZE)


def test_rep_head_in_channels_follow_each_student():
    segmentor2 = tiny_segmentor_cfg(NUM_CLASSES)
    segmentor2['decode_head']['channels'] = 24
    model = build(tiny_dual_u2pl_cfg(segmentor2=segmentor2))
    assert model.student1_rep_head.in_channels == 16
    assert model.student2_rep_head.in_channels == 24
    losses = model.loss(*semi_batch())
    assert torch.isfinite(losses['unsup2_loss_contrast'])


def test_bad_rep_head_configs_are_refused_with_the_key():
    cfg = tiny_dual_u2pl_cfg()
    cfg.pop('contrastive_loss')
    with pytest.raises(ValueError, match='contrastive_loss'):
        MODELS.build(cfg)
    cfg = tiny_dual_u2pl_cfg()
    cfg.rep_head.in_channels = 32
    with pytest.raises(ValueError, match=r'in_channels=32.*student1.*16'):
        MODELS.build(cfg)


def test_contrastive_terms_use_their_own_teacher():
    """Loss i receives teacher i's representations, probabilities and
    unreliable pixels, and the teachers differ, so mixing them up fails."""
    model = build(tiny_dual_u2pl_cfg())
    inputs, data_samples = semi_batch()
    recorder = CallRecorder(
        teacher1_rep_head=model.teacher1_rep_head,
        teacher2_rep_head=model.teacher2_rep_head,
        loss1=model.contrastive_loss1,
        loss2=model.contrastive_loss2)
    try:
        losses = model.loss(inputs, data_samples)
    finally:
        recorder.remove()
    assert torch.isfinite(losses['unsup1_loss_contrast'])
    assert torch.isfinite(losses['unsup2_loss_contrast'])
    for index in (1, 2):
        teacher = getattr(model, f'teacher{index}')
        # One call on the labeled batch, one on the weak view.
        rep_l, rep_u = recorder.outputs[f'teacher{index}_rep_head']
        kwargs = recorder.kwargs[f'loss{index}'][0]
        assert torch.equal(kwargs['teacher_reps'], torch.cat([rep_l, rep_u]))
        with torch.no_grad():
            logits_l, _ = forward_logits(teacher, inputs['labeled'])
            logits_u, _ = forward_logits(teacher, inputs['weak'])
        probs_u = logits_u.softmax(dim=1)
        valid = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
        labeled_u = model.pseudo_labeler(probs_u, valid, model.progress)
        unreliable = labeled_u.unreliable
        # The entropy labeler marks alpha_0 = 20% of the pixels unreliable;
        # labeled rows never are.
        assert unreliable.any()
        # The loss receives the maps at representation resolution.
        rep_size = rep_l.shape[2:]
        _, probs_l_rep, _ = resize_pixel_maps(
            rep_size, torch.zeros(2, SIZE, SIZE, dtype=torch.long),
            logits_l.softmax(dim=1), torch.zeros_like(unreliable))
        _, probs_u_rep, unreliable_rep = resize_pixel_maps(
            rep_size, torch.zeros(2, SIZE, SIZE, dtype=torch.long), probs_u,
            unreliable)
        assert unreliable_rep.any()
        assert torch.allclose(kwargs['teacher_probs'],
                              torch.cat([probs_l_rep, probs_u_rep]),
                              atol=1e-6)
        assert torch.equal(
            kwargs['unreliable'],
            torch.cat([torch.zeros_like(unreliable_rep), unreliable_rep]))
    assert not torch.allclose(recorder.outputs['teacher1_rep_head'][0],
                              recorder.outputs['teacher2_rep_head'][0])


def test_contrastive_gradient_reaches_its_own_student_only():
    model = build(tiny_dual_u2pl_cfg(cutmix=dict(prob=1.0)))
    losses = model.loss(*semi_batch())
    losses['unsup1_loss_contrast'].backward()
    student1_grads = [p.grad for p in model.student1_rep_head.parameters()]
    assert all(g is not None for g in student1_grads)
    assert any(g.abs().sum() > 0 for g in student1_grads)
    # Through the head into student 1's decoder and backbone.
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.student1.backbone.parameters())
    for module in (model.student2_rep_head, model.student2,
                   model.teacher1, model.teacher2, model.teacher1_rep_head,
                   model.teacher2_rep_head):
        assert all(p.grad is None for p in module.parameters())


def test_memory_banks_fill_and_survive_the_state_dict():
    model = build(tiny_dual_u2pl_cfg())
    model.loss(*semi_batch())
    state = model.state_dict()
    for index in (1, 2):
        bank = getattr(model, f'contrastive_loss{index}').memory_bank
        assert int(bank.count.sum()) > 0
        for name in ('keys', 'ptr', 'count'):
            assert f'contrastive_loss{index}.memory_bank.{name}' in state
    # Different teachers fill different queues.
    assert not torch.equal(model.contrastive_loss1.memory_bank.keys,
                           model.contrastive_loss2.memory_bank.keys)
    restored = build(tiny_dual_u2pl_cfg())
    assert int(restored.contrastive_loss1.memory_bank.count.sum()) == 0
    restored.load_state_dict(state)
    for index in (1, 2):
        for name in ('keys', 'ptr', 'count'):
            key = f'contrastive_loss{index}.memory_bank.{name}'
            assert torch.equal(restored.state_dict()[key], state[key]), key


def test_warm_up_and_no_contrast_keep_rml_losses_only():
    model = build(tiny_dual_u2pl_cfg(unsup_start_iter=5))
    model.set_train_progress(4, 10)
    losses = model.loss(*semi_batch())
    assert not any(key.startswith('unsup') for key in losses)
    assert 'sup1_decode.loss_ce' in losses and 'sup2_decode.loss_ce' in losses
    cfg = tiny_dual_u2pl_cfg()
    cfg.pop('rep_head')
    cfg.pop('contrastive_loss')
    plain = build(cfg)
    assert plain.teacher_student_pairs() == [
        (plain.teacher1, plain.student1), (plain.teacher2, plain.student2)
    ]
    losses = plain.loss(*semi_batch())
    assert 'unsup1_own_loss_ce' in losses
    assert not any('contrast' in key for key in losses)


# ------------------------------------------------------ composition configs
def build_config_model(path):
    cfg = adapt_config_to_device(Config.fromfile(path))
    model = MODELS.build(cfg.model)
    return cfg, model


def test_rml_u2pl_config_composes_rml_and_u2pl():
    _, model = build_config_model(RML_U2PL)
    assert type(model).__name__ == 'DualStudentSegmentor'
    assert type(model.pseudo_labeler).__name__ == 'EntropyPseudoLabeler'
    assert model.rectifier1 is not None and model.rectifier2 is not None
    for index in (1, 2):
        head = getattr(model, f'student{index}_rep_head')
        assert head.in_channels == 128
        loss = getattr(model, f'contrastive_loss{index}')
        assert (loss.num_classes, loss.feat_channels) == (11, 64)
        assert loss.memory_bank.keys.shape[:2] == (11, 30000)
    # That the rest is the RML config's: tests/configs/test_recipes.py.


def test_u2pl_rectifier_config_adds_the_rectifier_to_u2pl():
    _, model = build_config_model(U2PL_RECTIFIER)
    assert type(model).__name__ == 'MeanTeacherSegmentor'
    assert model.with_contrastive
    assert type(model.rectifier).__name__ == 'PrototypeRectifier'
    assert model.rectifier.num_classes == 11
    # The rectifier works in the teacher's decoder feature space.
    assert model.rectifier.feat_channels == \
        model.teacher.decode_head.conv_seg.in_channels


def test_segformer_mean_teacher_and_rml_share_one_mit_b0_definition():
    _, model = build_config_model(MEAN_TEACHER_SEGFORMER)
    assert type(model.student.backbone).__name__ == 'MixVisionTransformer'
    assert type(model.student.decode_head).__name__ == 'SegformerHead'
    assert model.student.decode_head.num_classes == 11
    assert type(model.pseudo_labeler).__name__ == 'EntropyPseudoLabeler'
    hetero = Config.fromfile(
        osp.join(
            CONFIG_DIR, 'rml',
            'rml_deeplabv3plus_effnetlite0-d16_segformer_mit-b0_1xb4-1k_'
            'camvid-1-8-256x320.py'))
    mean_teacher = Config.fromfile(MEAN_TEACHER_SEGFORMER)
    assert hetero.model.segmentor2.to_dict() == \
        mean_teacher.model.segmentor.to_dict()


def test_mmseg_config_example_wraps_the_zoo_model():
    cfg, model = build_config_model(FROM_MMSEG)
    assert type(model).__name__ == 'MeanTeacherSegmentor'
    student = model.student
    assert type(student.backbone).__name__ == 'ResNetV1c'
    assert student.backbone.depth == 18
    assert type(student.decode_head).__name__ == 'PSPHead'
    assert student.decode_head.num_classes == 11
    assert student.auxiliary_head.num_classes == 11
    assert cfg.train_cfg.unlabeled_dataloader.dataset.type == 'CamVidDataset'
    assert cfg.val_cfg.type == 'TeacherStudentValLoop'


# ------------------------------------------------------------ end to end
@HOOKS.register_module(force=True)
class RecordNonzeroGradients(Hook):
    """Names of the parameters that received a non-zero gradient during
    training (read after the run: the optimiser wrapper zeroes them)."""

    names: set = set()

    def before_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        type(self).names = set()
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.register_post_accumulate_grad_hook(
                    self._recorder(name))

    def _recorder(self, name):

        def record(param):
            if param.grad is not None and param.grad.abs().sum() > 0:
                type(self).names.add(name)

        return record


@pytest.fixture(scope='module')
def train_tool():
    return load_script('tools', 'train.py', name='_mmseg_semi_train_tool')


@pytest.fixture(autouse=True)
def restore_global_determinism():
    """Runs set ``torch.use_deterministic_algorithms(True)`` process-wide."""
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


def train_two_iterations(train_tool, tmp_path, config, segmentor_keys,
                         extra_hooks=(), cfg_options=()):
    """Train ``config`` shrunk by :func:`tiny_camvid_run_config` for 2
    iterations (the second with the unsupervised losses); return the
    logged training records and the final checkpoint's state dict."""
    text = tiny_camvid_run_config(
        config,
        semi=True,
        max_iters=2,
        checkpoint_interval=2,
        unsup_start_iter=1,
        segmentor_keys=segmentor_keys)
    if extra_hooks:
        hooks = Config.fromfile(config).to_dict()['custom_hooks']
        text += f'custom_hooks = {hooks + list(extra_hooks)!r}\n'
    tiny = tmp_path / 'tiny.py'
    tiny.write_text(text)
    work_dir = tmp_path / 'work'
    name = osp.splitext(osp.basename(config))[0]
    train_tool.main([
        str(tiny), '--work-dir',
        str(work_dir), '--cfg-options', f'experiment_name={name}',
        f'visualizer.name={name}', *cfg_options
    ])
    records = []
    for path in glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json')):
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if 'loss' in r]
    assert [r['step'] for r in train] == [1, 2]
    for record in train:
        for key, value in record.items():
            if 'loss' in key:
                assert math.isfinite(value), (name, key, value)
    checkpoint = torch.load(
        work_dir / 'iter_2.pth', map_location='cpu', weights_only=False)
    return train, checkpoint['state_dict']


UNDILATED = ('segmentor', )


def test_rml_u2pl_trains_on_camvid(tmp_path, train_tool):
    # After one iteration the teachers are near uniform over 11 classes: no
    # pixel passes U2PL's anchor threshold delta_p = 0.3, the loss would be
    # 0 and no gradient would reach the heads. Admit every labeled pixel.
    train, state = train_two_iterations(
        train_tool,
        tmp_path,
        RML_U2PL, ('segmentor1', 'segmentor2'),
        extra_hooks=[dict(type='RecordNonzeroGradients')],
        cfg_options=['model.contrastive_loss.anchor_prob_threshold=0.0'])
    last = train[-1]
    for index in (1, 2):
        assert last[f'unsup{index}_loss_contrast'] > 0
        assert f'unsup{index}_own_loss_ce' in last
        assert int(state[f'contrastive_loss{index}.memory_bank.count'].sum(
        )) > 0
        assert f'teacher{index}_rep_head.projection.weight' in state
    assert not any('contrast' in key for key in train[0])  # warm-up
    names = RecordNonzeroGradients.names
    for index in (1, 2):
        assert any(
            n.startswith(f'student{index}_rep_head.') for n in names), names
    assert not any(n.startswith('teacher') for n in names)


def test_u2pl_rectifier_trains_on_camvid(tmp_path, train_tool):
    train, state = train_two_iterations(train_tool, tmp_path, U2PL_RECTIFIER,
                                        UNDILATED)
    assert 0 <= train[-1]['unsup_rectified_ratio'] <= 1
    assert 'unsup_loss_contrast' in train[-1]
    assert state['rectifier.prototype_initialised'].any()


def test_segformer_mean_teacher_trains_on_camvid(tmp_path, train_tool):
    # MiT has no dilation to drop.
    train, state = train_two_iterations(train_tool, tmp_path,
                                        MEAN_TEACHER_SEGFORMER, ())
    assert 'unsup_loss_ce' in train[-1]
    assert 'student.backbone.layers.0.0.projection.weight' in state


def test_mmseg_config_example_trains_on_camvid(tmp_path, train_tool):
    # The zoo PSPNet keeps its dilated ResNet (no output_stride argument).
    train, state = train_two_iterations(train_tool, tmp_path, FROM_MMSEG,
                                        ())
    assert 'unsup_loss_ce' in train[-1]
    assert 'sup_aux.loss_ce' in train[-1]
    assert 'teacher.auxiliary_head.conv_seg.weight' in state
