"""EMA teacher: the decay schedule, the update arithmetic and the hook."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub
from torch import nn

from mmseg_semi.engine.hooks import EMATeacherHook
from mmseg_semi.engine.hooks.ema_teacher_hook import ema_decay_at, ema_update_


# --------------------------------------------------------------- schedule
@pytest.mark.parametrize('step, expected', [(0, 0.0), (1, 0.5), (3, 0.75),
                                            (9, 0.9), (98, 1 - 1 / 99),
                                            (99, 0.99), (100, 0.99),
                                            (10**6, 0.99)])
def test_ema_decay_at_u2pl_warmup(step, expected):
    assert ema_decay_at(step, 0.99, warmup=True) == pytest.approx(
        expected, abs=1e-12)


def test_ema_decay_at_without_warmup_is_constant():
    assert [ema_decay_at(s, 0.9, warmup=False)
            for s in (0, 1, 50)] == [0.9, 0.9, 0.9]


def test_ema_decay_at_rejects_negative_step():
    with pytest.raises(ValueError, match='step'):
        ema_decay_at(-1, 0.99, warmup=True)


# --------------------------------------------------------------- update
class LinearBN(nn.Module):
    """One linear layer and a BN: params, float buffers, an int buffer."""

    def __init__(self, weight, bias, mean, var, tracked):
        super().__init__()
        self.fc = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([weight]))
            self.fc.bias.fill_(bias)
            self.bn.running_mean.fill_(mean)
            self.bn.running_var.fill_(var)
            self.bn.num_batches_tracked.fill_(tracked)


def teacher_student():
    teacher = LinearBN([1.0, 2.0], 0.0, mean=0.0, var=1.0, tracked=1)
    student = LinearBN([3.0, 6.0], 1.0, mean=4.0, var=5.0, tracked=7)
    return teacher, student


def test_ema_update_averages_params_and_float_buffers():
    teacher, student = teacher_student()
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    ema_update_(teacher, student, decay=0.75)
    # 0.75 * teacher + 0.25 * student
    assert teacher.fc.weight.tolist() == [[1.5, 3.0]]
    assert teacher.fc.bias.tolist() == [0.25]
    assert teacher.bn.weight.tolist() == [1.0]  # both 1: unchanged
    assert teacher.bn.running_mean.tolist() == [1.0]
    assert teacher.bn.running_var.tolist() == [2.0]
    # The integer counter is copied, never averaged.
    assert teacher.bn.num_batches_tracked.item() == 7
    assert teacher.bn.num_batches_tracked.dtype == torch.int64
    for key, value in student.state_dict().items():
        assert torch.equal(value, student_before[key]), key


def test_ema_update_copy_buffers():
    teacher, student = teacher_student()
    ema_update_(teacher, student, decay=0.75, buffers='copy')
    assert teacher.fc.weight.tolist() == [[1.5, 3.0]]  # params still averaged
    assert teacher.bn.running_mean.tolist() == [4.0]
    assert teacher.bn.running_var.tolist() == [5.0]
    assert teacher.bn.num_batches_tracked.item() == 7


def test_ema_update_decay_extremes():
    teacher, student = teacher_student()
    ema_update_(teacher, student, decay=1.0)
    assert teacher.fc.weight.tolist() == [[1.0, 2.0]]
    assert teacher.bn.running_mean.tolist() == [0.0]
    ema_update_(teacher, student, decay=0.0)
    for key, value in student.state_dict().items():
        assert torch.equal(teacher.state_dict()[key], value), key


def test_ema_update_runs_without_autograd():
    """In-place updates of leaves that require grad only work under
    no_grad; the student's graph stays intact and nothing reaches the
    teacher's .grad."""
    teacher, student = teacher_student()
    assert teacher.fc.weight.requires_grad
    loss = student.fc(torch.ones(4, 2)).sum()
    ema_update_(teacher, student, decay=0.5)
    assert teacher.fc.weight.grad_fn is None
    loss.backward()
    assert student.fc.weight.grad.tolist() == [[4.0, 4.0]]
    assert teacher.fc.weight.grad is None


def test_ema_update_rejects_bad_input():
    teacher, student = teacher_student()
    with pytest.raises(ValueError, match='buffers'):
        ema_update_(teacher, student, 0.5, buffers='median')
    with pytest.raises(ValueError, match='different parameters'):
        ema_update_(teacher, nn.Linear(2, 1), 0.5)


# ----------------------------------------------------------------- hook
class Scalar(nn.Module):

    def __init__(self, value=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([value]))


class FakeSemiModel(nn.Module):
    """What the hook needs: pairs and ``unsup_start_iter``."""

    def __init__(self, num_pairs=1, unsup_start_iter=0):
        super().__init__()
        self.teachers = nn.ModuleList(Scalar() for _ in range(num_pairs))
        self.students = nn.ModuleList(Scalar() for _ in range(num_pairs))
        self.unsup_start_iter = unsup_start_iter

    def teacher_student_pairs(self):
        return list(zip(self.teachers, self.students))


def fake_runner(model, name):
    return SimpleNamespace(
        iter=0, model=model, message_hub=MessageHub.get_instance(name))


def step(hook, runner, iteration, student_values):
    runner.iter = iteration
    for student, value in zip(runner.model.students, student_values):
        student.w.data.fill_(value)
    hook.after_train_iter(runner, batch_idx=iteration)
    return [t.w.item() for t in runner.model.teachers]


def test_hook_copies_during_warmup_then_ramps():
    model = FakeSemiModel(unsup_start_iter=2)
    runner = fake_runner(model, 'ema_hook_warmup')
    hook = EMATeacherHook(decay=0.99, warmup=True)
    hook.before_train(runner)
    decay = lambda: runner.message_hub.get_scalar(  # noqa: E731
        'train/ema_decay').current()
    # Supervised-only warm-up (iterations 0, 1): the teacher is the student.
    assert step(hook, runner, 0, [1.0]) == [1.0]
    assert decay() == 0.0
    assert step(hook, runner, 1, [2.0]) == [2.0]
    # Update k = iter - unsup_start_iter: decay min(1 - 1/(k+1), 0.99).
    assert step(hook, runner, 2, [4.0]) == [4.0]  # k=0: copy
    assert decay() == 0.0
    assert step(hook, runner, 3, [8.0]) == [6.0]  # k=1: 0.5*4 + 0.5*8
    assert decay() == 0.5
    teacher = step(hook, runner, 4, [9.0])  # k=2: 2/3*6 + 1/3*9
    assert teacher == [pytest.approx(7.0, abs=1e-6)]
    assert decay() == pytest.approx(2 / 3)
    runner.model.teachers[0].w.data.fill_(0.0)
    step(hook, runner, 1000, [1.0])
    assert decay() == 0.99
    assert runner.model.teachers[0].w.item() == pytest.approx(0.01)


def test_hook_without_warmup_uses_constant_decay_after_start():
    model = FakeSemiModel(unsup_start_iter=0)
    runner = fake_runner(model, 'ema_hook_constant')
    hook = EMATeacherHook(decay=0.75, warmup=False)
    model.teachers[0].w.data.fill_(4.0)
    assert step(hook, runner, 0, [8.0]) == [5.0]  # 0.75*4 + 0.25*8


def test_hook_updates_every_pair():
    """RML-like models report several pairs; all follow their students."""
    model = FakeSemiModel(num_pairs=3, unsup_start_iter=0)
    runner = fake_runner(model, 'ema_hook_pairs')
    hook = EMATeacherHook(decay=0.99)
    assert step(hook, runner, 0, [1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    assert step(hook, runner, 1, [3.0, 4.0, 7.0]) == [2.0, 3.0, 5.0]


def test_hook_interval():
    model = FakeSemiModel()
    runner = fake_runner(model, 'ema_hook_interval')
    hook = EMATeacherHook(decay=0.5, warmup=False, interval=2)
    assert step(hook, runner, 0, [4.0]) == [0.0]  # (0+1) % 2: skipped
    assert step(hook, runner, 1, [4.0]) == [2.0]  # 0.5*0 + 0.5*4
    assert step(hook, runner, 2, [8.0]) == [2.0]


@pytest.mark.parametrize('kwargs, match', [
    (dict(decay=-0.1), 'decay'),
    (dict(decay=1.5), 'decay'),
    (dict(buffers='median'), 'buffers'),
    (dict(interval=0), 'interval'),
])
def test_hook_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EMATeacherHook(**kwargs)


def test_hook_rejects_a_model_without_pairs():
    runner = fake_runner(nn.Linear(1, 1), 'ema_hook_bad_model')
    hook = EMATeacherHook()
    with pytest.raises(TypeError, match='teacher_student_pairs'):
        hook.before_train(runner)
    with pytest.raises(TypeError, match='teacher_student_pairs'):
        hook.after_train_iter(runner, batch_idx=0)
