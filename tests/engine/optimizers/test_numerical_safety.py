"""Non-finite losses (FiniteLossOptimWrapper) and NaN-free edge cases."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from torch import nn

import mmseg_semi  # noqa: F401
from helpers import (single_thread, tiny_mean_teacher_cfg,  # noqa: F401
                     tiny_raw_semi_batch)
from mmseg.registry import MODELS, OPTIM_WRAPPERS
from mmseg_semi.engine.hooks import EMATeacherHook
from mmseg_semi.engine.optimizers import FiniteLossOptimWrapper
from mmseg_semi.engine.optimizers.finite_loss_guard import (
    SKIPPED_ITER_INFO_KEY, SKIPPED_STEPS_SCALAR_KEY, nonfinite_loss_terms)
from mmseg_semi.models.pseudo_labelers import (EntropyPseudoLabeler,
                                               PrototypeRectifier)

init_default_scope('mmseg')
NAN = float('nan')


class TwoTermModel(BaseModel):
    """A linear model whose loss dict has two terms and a logged stat; the
    second term can be made non-finite with ``bad_value``."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(2)
        self.bad_value = None

    def forward(self, inputs, data_samples=None, mode='loss'):
        out = self.fc(self.bn(inputs)).mean()
        second = out * 2
        if self.bad_value is not None:
            second = second * self.bad_value
        return dict(loss_a=out, unsup_loss_ce=second,
                    unsup_weight=torch.tensor(1.0))


def wrapper_and_model(nonfinite_loss, iteration=7):
    torch.manual_seed(0)
    model = TwoTermModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    wrapper = FiniteLossOptimWrapper(
        nonfinite_loss=nonfinite_loss, optimizer=optimizer)
    wrapper.message_hub.update_info('iter', iteration)
    return wrapper, model


def batch():
    return dict(inputs=torch.tensor([[1.0, 2.0], [3.0, 5.0]]))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def assert_same(before, after):
    assert all(torch.equal(a, b) for a, b in zip(before, after))


# ----------------------------------------------------- the wrapper, alone
def test_registered_and_validates_its_option():
    assert OPTIM_WRAPPERS.get('FiniteLossOptimWrapper') is \
        FiniteLossOptimWrapper
    with pytest.raises(ValueError, match="nonfinite_loss.*'ignore'"):
        FiniteLossOptimWrapper(
            nonfinite_loss='ignore',
            optimizer=torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1))


def test_finite_steps_match_plain_optim_wrapper():
    from mmengine.optim import OptimWrapper
    wrapper, model = wrapper_and_model('raise')
    reference = copy.deepcopy(model)
    plain = OptimWrapper(optimizer=torch.optim.SGD(
        reference.parameters(), lr=0.1, momentum=0.9))
    for _ in range(2):
        model.train_step(batch(), wrapper)
        reference.train_step(batch(), plain)
    assert_same(params(model), params(reference))
    assert wrapper.skipped_steps == 0


def test_raise_names_the_nonfinite_term_and_leaves_params_alone():
    wrapper, model = wrapper_and_model('raise')
    model.bad_value = NAN
    before = params(model)
    with pytest.raises(FloatingPointError) as error:
        model.train_step(batch(), wrapper)
    message = str(error.value)
    assert 'unsup_loss_ce=nan' in message
    assert 'iteration 7' in message
    assert 'loss_a' not in message  # the finite term is not blamed
    assert_same(before, params(model))
    assert all(p.grad is None for p in model.parameters())


def test_inf_is_caught_too():
    wrapper, model = wrapper_and_model('raise')
    model.bad_value = math.inf
    with pytest.raises(FloatingPointError, match='unsup_loss_ce=-?inf'):
        model.train_step(batch(), wrapper)


def test_skip_keeps_params_and_optimizer_state_and_counts():
    wrapper, model = wrapper_and_model('skip')
    model.train_step(batch(), wrapper)  # a good step fills the momentum
    optim_state = copy.deepcopy(wrapper.optimizer.state_dict())
    before = params(model)
    model.bad_value = NAN
    log_vars = model.train_step(batch(), wrapper)
    assert math.isnan(log_vars['loss'].item())
    assert_same(before, params(model))
    after_state = wrapper.optimizer.state_dict()
    for key, state in optim_state['state'].items():
        assert torch.equal(state['momentum_buffer'],
                           after_state['state'][key]['momentum_buffer'])
    assert all(p.grad is None or not p.grad.any()
               for p in model.parameters())
    assert wrapper.skipped_steps == 1
    hub = wrapper.message_hub
    assert hub.get_info(SKIPPED_ITER_INFO_KEY) == 7
    assert hub.get_scalar(SKIPPED_STEPS_SCALAR_KEY).current() == 1
    # Training goes on: the next finite step updates the parameters.
    model.bad_value = None
    hub.update_info('iter', 8)
    model.train_step(batch(), wrapper)
    assert not torch.equal(before[0], params(model)[0])
    assert wrapper.skipped_steps == 1
    assert hub.get_info(SKIPPED_ITER_INFO_KEY) == 7


def test_skip_counter_survives_the_state_dict():
    wrapper, model = wrapper_and_model('skip')
    model.bad_value = NAN
    model.train_step(batch(), wrapper)
    model.train_step(batch(), wrapper)
    state = wrapper.state_dict()
    assert state['nonfinite_loss_skips'] == 2
    fresh, _ = wrapper_and_model('skip')
    fresh.load_state_dict(state)
    assert fresh.skipped_steps == 2
    assert 'nonfinite_loss_skips' in state  # the caller's dict is untouched


def test_skip_refuses_when_the_forward_broke_a_buffer():
    wrapper, model = wrapper_and_model('skip')
    inputs = batch()
    inputs['inputs'][0, 0] = NAN  # BN running mean becomes NaN
    with pytest.raises(FloatingPointError, match='bn.running_mean'):
        model.train_step(inputs, wrapper)


def test_off_is_plain_optim_wrapper_behaviour():
    wrapper, model = wrapper_and_model(None)
    model.bad_value = NAN
    model.train_step(batch(), wrapper)  # no check: NaN reaches the params
    assert torch.isnan(model.fc.weight).all()


def test_nonfinite_loss_terms_reads_lists_and_skips_stats():
    losses = dict(
        loss_ok=torch.tensor(1.0),
        aux_loss=[torch.tensor(1.0), torch.tensor(math.inf)],
        unsup_weight=torch.tensor(NAN))  # a statistic, not summed
    assert nonfinite_loss_terms(losses) == [('aux_loss', '1.0, inf')]


# ------------------------------------------- a mean teacher (U2PL path)
def mean_teacher_with_nan_unsup_loss(nonfinite_loss):
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(tiny_mean_teacher_cfg()))
    model.set_train_progress(3, 10)
    model.train()
    with torch.no_grad():  # a teacher that an EMA update would move
        for param in model.teacher.parameters():
            param.add_(0.05)
    model.unsup_weight = NAN  # unsup_loss_ce = nan, sup terms finite
    wrapper = FiniteLossOptimWrapper(
        nonfinite_loss=nonfinite_loss,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    wrapper.message_hub.update_info('iter', 3)
    return model, wrapper


def run_ema_hook(model, wrapper, iteration=3):
    runner = SimpleNamespace(model=model, iter=iteration,
                             message_hub=wrapper.message_hub)
    EMATeacherHook(decay=0.5, warmup=False).after_train_iter(runner, 0)


def test_mean_teacher_nan_raises_with_the_unsup_term():
    model, wrapper = mean_teacher_with_nan_unsup_loss('raise')
    with pytest.raises(FloatingPointError, match='unsup_loss_ce=nan') as e:
        model.train_step(tiny_raw_semi_batch(), wrapper)
    assert 'sup_decode.loss_ce' not in str(e.value)


def test_mean_teacher_nan_step_is_skipped_with_teacher_untouched():
    model, wrapper = mean_teacher_with_nan_unsup_loss('skip')
    student, teacher = params(model.student), snapshot(model.teacher)
    model.train_step(tiny_raw_semi_batch(), wrapper)
    run_ema_hook(model, wrapper)
    assert_same(student, params(model.student))
    after = snapshot(model.teacher)
    assert all(torch.equal(teacher[k], after[k]) for k in teacher)
    assert wrapper.skipped_steps == 1
    # Control: at an iteration that was not skipped the hook does move
    # the teacher, so the check above can fail.
    run_ema_hook(model, wrapper, iteration=4)
    moved = snapshot(model.teacher)
    assert not all(torch.equal(teacher[k], moved[k]) for k in teacher)


# ------------------------------------------------ NaN-free edge cases
def test_entropy_labeler_one_hot_and_uniform_batches_are_finite():
    """0 * log 0 must not be NaN; a batch whose pixels all share one entropy
    (one-hot or uniform) has a finite threshold and weight."""
    labeler = EntropyPseudoLabeler(alpha_0=0.2)
    one_hot = torch.zeros(1, 3, 2, 2)
    one_hot[:, 1] = 1.0
    uniform = torch.full((1, 3, 2, 2), 1 / 3)
    for probs in (one_hot, uniform):
        pseudo = labeler(probs, torch.ones(1, 2, 2, dtype=torch.bool),
                         (5, 10))
        for value in (pseudo.threshold, pseudo.weight):
            assert torch.isfinite(value).all()


def test_rectifier_batch_without_valid_pixels_changes_nothing():
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=2,
                                   momentum=0.5)
    feats = torch.randn(1, 2, 2, 2)
    probs = torch.softmax(torch.randn(1, 3, 2, 2), dim=1)
    rectifier.update(feats, probs)
    state = snapshot(rectifier)
    nothing = torch.zeros(1, 2, 2, dtype=torch.bool)
    rectifier.update(feats * 100, probs, nothing)
    after = snapshot(rectifier)
    assert all(torch.equal(state[k], after[k]) for k in state)
    rectified, changed = rectifier(probs, feats, nothing)
    assert torch.isfinite(rectified).all()
    assert changed.item() == 0.0  # no valid pixel: nothing counted, no 0/0


def test_rectifier_class_never_seen_stays_finite():
    rectifier = PrototypeRectifier(num_classes=3, feat_channels=2)
    probs = torch.zeros(1, 3, 1, 2)
    probs[:, 0] = 1.0  # only class 0 is ever the arg-max
    rectifier.update(torch.randn(1, 2, 1, 2), probs)
    assert rectifier.prototype_initialised.tolist() == [True, False, False]
    for buffer in (rectifier.prototypes, rectifier.class_prior):
        assert torch.isfinite(buffer).all()
    rectified, _ = rectifier(torch.full((1, 3, 1, 2), 1 / 3),
                             torch.randn(1, 2, 1, 2))
    assert torch.isfinite(rectified).all()
