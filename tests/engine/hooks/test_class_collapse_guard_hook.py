"""ClassCollapseGuardHook: warns about, records and pauses on a class whose
pseudo-label share collapses, on hand-fed class-share windows."""
import json
import logging

import pytest
import torch
from mmengine.logging import MessageHub

from mmseg_semi.engine.hooks import ClassCollapseGuardHook
from mmseg_semi.models.pseudo_labelers import EntropyPseudoLabeler
from mmseg_semi.models.utils.class_share_monitor import ClassShareMonitor


class FakeModel(torch.nn.Module):

    def __init__(self, num_classes=3):
        super().__init__()
        self.monitor = ClassShareMonitor(num_classes)
        self.paused_until = 0

    def class_share_monitors(self):
        return {'': self.monitor}

    def pause_unsup(self, until_iter):
        self.paused_until = until_iter


class FakeDataset:
    metainfo = dict(classes=('background', 'shirt', 'bag'))


class FakeLoader:
    dataset = FakeDataset()


class FakeRunner:

    def __init__(self, model, log_dir):
        self.model = model
        self.iter = 0
        self.rank = 0
        self.log_dir = str(log_dir)
        self.train_dataloader = FakeLoader()
        self.message_hub = MessageHub.get_instance('class_guard_test')
        self.logger = logging.getLogger('class_guard_test')


def feed_window(model, labeled, pseudo_share, pixels=1000):
    """One window: labeled counts, and pseudo-labels with the given class
    shares, all reliable."""
    model.monitor.update_labeled(torch.tensor(labeled, dtype=torch.float32))
    counts = [int(round(s * pixels)) for s in pseudo_share]
    labels = torch.cat([torch.full((n, ), c) for c, n in enumerate(counts)])
    probs = torch.nn.functional.one_hot(labels, 3).float().t().reshape(
        1, 3, 1, -1)
    pseudo = EntropyPseudoLabeler(alpha_0=0.0)(probs)
    model.monitor.update_pseudo(probs, pseudo)


def run_guard(hook, runner, model, shares, labeled=(700., 200., 100.)):
    for step, share in enumerate(shares):
        feed_window(model, labeled, share)
        runner.iter = (step + 1) * hook.interval - 1
        hook.after_train_iter(runner, batch_idx=runner.iter)


def test_guard_fires_on_a_shrinking_class_not_on_stable_ones(
        tmp_path, caplog):
    model = FakeModel()
    runner = FakeRunner(model, tmp_path)
    hook = ClassCollapseGuardHook(interval=10, min_share_ratio=0.25,
                                  patience=2, pause_iters=30)
    # 'bag' (labeled share 0.1) shrinks: 0.1, 0.05, 0.02, 0.01, 0.01.
    shares = [(0.7, 0.2, 0.1), (0.75, 0.2, 0.05), (0.78, 0.2, 0.02),
              (0.79, 0.2, 0.01), (0.79, 0.2, 0.01)]
    with caplog.at_level(logging.WARNING, logger='class_guard_test'):
        run_guard(hook, runner, model, shares)
    warnings = [r.getMessage() for r in caplog.records
                if 'missing class' in r.getMessage()]
    # Below 0.25 x 0.1 from window 3 on; patience 2 -> once, at window 4.
    assert len(warnings) == 1
    assert "'bag'" in warnings[0] and 'iteration 40' in warnings[0]
    assert model.paused_until == 40 + 30
    records = [json.loads(line)
               for line in open(tmp_path / 'class_shares.jsonl')]
    assert [r['iter'] for r in records] == [10, 20, 30, 40, 50]
    assert records[-1]['collapsing'] == ['bag']
    assert records[0]['collapsing'] == []
    assert records[-1]['pseudo_label_share'][2] == pytest.approx(0.01)
    assert records[-1]['labeled_share'] == pytest.approx([0.7, 0.2, 0.1])
    assert records[-1]['min_share_ratio'] == pytest.approx(0.1)
    assert runner.message_hub.get_scalar(
        'train/pl_min_share_ratio').current() == pytest.approx(0.1)


def test_guard_silent_on_stable_shares_and_during_warm_up(tmp_path, caplog):
    model = FakeModel()
    runner = FakeRunner(model, tmp_path)
    hook = ClassCollapseGuardHook(interval=10, patience=1)
    # A warm-up window: labeled batches only, no pseudo-labels.
    model.monitor.update_labeled(torch.tensor([700., 200., 100.]))
    runner.iter = 9
    hook.after_train_iter(runner, 9)
    shares = [(0.72, 0.18, 0.1), (0.68, 0.22, 0.1), (0.7, 0.2, 0.1),
              (0.75, 0.2, 0.05)]
    with caplog.at_level(logging.WARNING, logger='class_guard_test'):
        run_guard(hook, runner, model, shares)
    assert not [r for r in caplog.records if 'missing' in r.getMessage()]
    assert model.paused_until == 0
    assert len(open(tmp_path / 'class_shares.jsonl').readlines()) == 4


def test_guard_arguments_are_checked():
    for kwargs, key in ((dict(interval=0), 'interval'),
                        (dict(patience=0), 'patience'),
                        (dict(pause_iters=-1), 'pause_iters'),
                        (dict(min_share_ratio=0), 'min_share_ratio'),
                        (dict(min_share_ratio=1.5), 'min_share_ratio')):
        with pytest.raises(ValueError, match=key):
            ClassCollapseGuardHook(**kwargs)
