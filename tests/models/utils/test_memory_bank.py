"""Class-wise FIFO memory bank of negative keys (U2PL Eq. 16)."""
import os

import pytest
import torch
from mmseg.registry import MODELS

from mmseg_semi.models.utils import class_memory_bank
from mmseg_semi.models.utils.class_memory_bank import (ClassMemoryBank,
                                                       fifo_write_slots,
                                                       random_subset_per_class)
from helpers import gloo_group, spawn_gloo_workers


def scalar_keys(*values):
    """Keys of dimension 1 whose value identifies them: shape (L, 1)."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1)


def mask(*rows):
    return torch.tensor(rows, dtype=torch.bool)


def stored(bank, cls):
    """Queue ``cls``'s slots as a list of scalars."""
    return bank.keys[cls, :, 0].tolist()


def test_buffers_are_preallocated_and_persistent():
    bank = ClassMemoryBank(num_classes=3, queue_size=5, feat_channels=4)
    assert bank.keys.shape == (3, 5, 4)
    assert bank.keys.dtype == torch.float32
    assert bank.ptr.tolist() == [0, 0, 0]
    assert bank.count.tolist() == [0, 0, 0]
    assert set(bank.state_dict()) == {'keys', 'ptr', 'count'}


def test_push_is_fifo_in_arrival_order():
    bank = ClassMemoryBank(num_classes=1, queue_size=4, feat_channels=1)
    bank.push(scalar_keys(1, 2, 3), mask([True, True, True]))
    assert stored(bank, 0) == [1, 2, 3, 0]
    assert bank.ptr.tolist() == [3] and bank.count.tolist() == [3]
    # Key 4 fills the last slot, key 5 wraps and overwrites the oldest (1).
    bank.push(scalar_keys(4, 5), mask([True, True]))
    assert stored(bank, 0) == [5, 2, 3, 4]
    assert bank.ptr.tolist() == [1] and bank.count.tolist() == [4]
    bank.push(scalar_keys(6), mask([True]))
    assert stored(bank, 0) == [5, 6, 3, 4]
    assert bank.ptr.tolist() == [2] and bank.count.tolist() == [4]


def test_push_more_than_capacity_keeps_newest():
    bank = ClassMemoryBank(num_classes=1, queue_size=4, feat_channels=1)
    bank.push(scalar_keys(1), mask([True]))
    # 10 keys from ptr=1: sequential writes would end with 7..10 in slots
    # (1 + 6..9) % 4 = 3, 0, 1, 2.
    bank.push(scalar_keys(*range(1, 11)), mask([True] * 10))
    assert stored(bank, 0) == [8, 9, 10, 7]
    assert bank.ptr.tolist() == [(1 + 10) % 4]
    assert bank.count.tolist() == [4]


def test_classes_are_independent_and_masks_select_keys():
    bank = ClassMemoryBank(num_classes=3, queue_size=3, feat_channels=1)
    keys = scalar_keys(10, 20, 30, 40)
    bank.push(keys, mask([True, False, True, True],
                         [False, True, False, False],
                         [False, False, False, False]))
    assert stored(bank, 0) == [10, 30, 40]
    assert stored(bank, 1) == [20, 0, 0]
    assert stored(bank, 2) == [0, 0, 0]
    assert bank.ptr.tolist() == [0, 1, 0]
    assert bank.count.tolist() == [3, 1, 0]
    bank.push(scalar_keys(50), mask([True], [True], [False]))
    assert stored(bank, 0) == [50, 30, 40]
    assert stored(bank, 1) == [20, 50, 0]
    assert bank.ptr.tolist() == [1, 2, 0]
    assert bank.count.tolist() == [3, 2, 0]


def test_push_of_nothing_changes_nothing():
    bank = ClassMemoryBank(num_classes=2, queue_size=3, feat_channels=2)
    bank.push(torch.ones(2, 2), mask([True, False], [False, False]))
    before = {k: v.clone() for k, v in bank.state_dict().items()}
    bank.push(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool))
    bank.push(torch.zeros(0, 2), torch.zeros(2, 0, dtype=torch.bool))
    for name, value in bank.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_fifo_write_slots_matches_sequential_enqueue():
    """The vectorised slots equal a one-key-at-a-time ring buffer."""
    generator = torch.Generator().manual_seed(0)
    capacity = 5
    class_mask = torch.rand(3, 17, generator=generator) > 0.4
    ptr = torch.tensor([0, 3, 4])
    keep, slots = fifo_write_slots(class_mask, ptr, capacity)
    for cls in range(3):
        ring = [None] * capacity
        position = int(ptr[cls])
        for column in range(17):
            if class_mask[cls, column]:
                ring[position] = column
                position = (position + 1) % capacity
        written = [None] * capacity
        for column in range(17):
            if keep[cls, column]:
                assert written[slots[cls, column]] is None
                written[slots[cls, column]] = column
        assert written == ring


def test_keys_are_detached_and_cast_to_the_bank_dtype():
    bank = ClassMemoryBank(num_classes=1, queue_size=2, feat_channels=3,
                           dtype='float16')
    keys = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    bank.push(keys * 2, mask([True]))
    assert bank.keys.dtype == torch.float16
    assert not bank.keys.requires_grad
    assert bank.keys[0, 0].tolist() == [2.0, 4.0, 6.0]


def test_state_dict_round_trip_restores_queues(tmp_path):
    generator = torch.Generator().manual_seed(1)
    bank = ClassMemoryBank(num_classes=2, queue_size=4, feat_channels=3)
    bank.push(torch.randn(6, 3, generator=generator),
              torch.rand(2, 6, generator=generator) > 0.3)
    path = tmp_path / 'bank.pth'
    torch.save(bank.state_dict(), path)

    resumed = ClassMemoryBank(num_classes=2, queue_size=4, feat_channels=3)
    resumed.load_state_dict(torch.load(path))
    for name in ('keys', 'ptr', 'count'):
        assert torch.equal(getattr(resumed, name), getattr(bank, name))
    # Resuming continues the ring where it stopped.
    more = torch.randn(3, 3, generator=generator)
    more_mask = mask([True, True, True], [False, True, False])
    bank.push(more, more_mask)
    resumed.push(more, more_mask)
    for name in ('keys', 'ptr', 'count'):
        assert torch.equal(getattr(resumed, name), getattr(bank, name))


def test_state_dict_with_other_shape_is_rejected():
    bank = ClassMemoryBank(num_classes=2, queue_size=4, feat_channels=3)
    other = ClassMemoryBank(num_classes=2, queue_size=5, feat_channels=3)
    with pytest.raises(RuntimeError, match='keys'):
        other.load_state_dict(bank.state_dict())


def test_sample_draws_only_filled_entries_uniformly():
    bank = ClassMemoryBank(num_classes=3, queue_size=10, feat_channels=1)
    bank.push(scalar_keys(1, 2, 3), mask([True] * 3, [False] * 3,
                                         [True, False, False]))
    generator = torch.Generator().manual_seed(0)
    negatives, nonempty = bank.sample_negatives(
        num_anchors=30, num_negatives=100, generator=generator)
    assert negatives.shape == (3, 30, 100, 1)
    assert nonempty.tolist() == [True, False, True]
    values = negatives[0].flatten()
    # 3000 draws from {1, 2, 3}; each expected 1000 times (sd ~ 26).
    for key in (1, 2, 3):
        assert abs(int((values == key).sum()) - 1000) < 150
    assert int((values == 0).sum()) == 0
    assert torch.all(negatives[2] == 1)


def test_sample_after_wrap_uses_the_whole_queue():
    bank = ClassMemoryBank(num_classes=1, queue_size=4, feat_channels=1)
    bank.push(scalar_keys(1, 2, 3, 4, 5, 6), mask([True] * 6))
    negatives, _ = bank.sample_negatives(
        5, 200, generator=torch.Generator().manual_seed(2))
    assert set(negatives.flatten().tolist()) == {3.0, 4.0, 5.0, 6.0}


def test_sample_is_deterministic_with_a_generator():
    bank = ClassMemoryBank(num_classes=2, queue_size=8, feat_channels=2)
    bank.push(torch.randn(8, 2), torch.ones(2, 8, dtype=torch.bool))
    first, _ = bank.sample_negatives(3, 4, torch.Generator().manual_seed(5))
    second, _ = bank.sample_negatives(3, 4, torch.Generator().manual_seed(5))
    third, _ = bank.sample_negatives(3, 4, torch.Generator().manual_seed(6))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_max_push_per_class_caps_and_keeps_arrival_order():
    bank = ClassMemoryBank(num_classes=3, queue_size=10, feat_channels=1,
                           max_push_per_class=2)
    bank.push(scalar_keys(1, 2, 3, 4, 5),
              mask([True] * 5,
                   [False, False, False, True, False],
                   [False] * 5),
              generator=torch.Generator().manual_seed(3))
    assert bank.count.tolist() == [2, 1, 0]
    assert bank.ptr.tolist() == [2, 1, 0]
    first, second = stored(bank, 0)[:2]
    assert {first, second} <= {1, 2, 3, 4, 5}
    assert first < second  # arrival order survives the subsampling
    assert stored(bank, 1)[0] == 4


def test_capped_push_keeps_a_uniform_subset_of_the_offered_keys():
    """Each class (one trial per class) offers keys 1..10 and keeps 4 of
    them: distinct, offered, in arrival order, each with probability 0.4."""
    trials, offered, cap = 3000, 10, 4
    bank = ClassMemoryBank(num_classes=trials + 1, queue_size=8,
                           feat_channels=1, max_push_per_class=cap)
    class_mask = torch.ones(trials + 1, offered, dtype=torch.bool)
    class_mask[-1, 2:] = False  # the last class offers 2 keys (< cap)
    bank.push(scalar_keys(*range(1, offered + 1)), class_mask,
              generator=torch.Generator().manual_seed(0))
    assert bank.count.tolist() == [cap] * trials + [2]
    assert stored(bank, trials)[:2] == [1, 2]
    kept = bank.keys[:trials, :cap, 0]
    assert bool((bank.keys[:trials, cap:] == 0).all())
    assert bool(((kept >= 1) & (kept <= offered)).all())
    assert bool((kept[:, 1:] > kept[:, :-1]).all())  # distinct, in order
    frequency = torch.stack(
        [(kept == key).any(dim=1).float().mean()
         for key in range(1, offered + 1)])
    # P(kept) = 4 / 10 for every key (sd ~ 0.009).
    assert torch.allclose(frequency, torch.full((offered, ), 0.4),
                          atol=0.04)


def test_capped_push_is_deterministic_with_a_generator():

    def pushed(seed):
        bank = ClassMemoryBank(num_classes=2, queue_size=6, feat_channels=2,
                               max_push_per_class=3)
        bank.push(torch.arange(40.).view(20, 2),
                  torch.ones(2, 20, dtype=torch.bool),
                  generator=torch.Generator().manual_seed(seed))
        return bank.keys.clone()

    assert torch.equal(pushed(0), pushed(0))
    assert not torch.equal(pushed(0), pushed(1))


def test_random_subset_is_uniform():
    generator = torch.Generator().manual_seed(0)
    trials = 4000
    class_mask = torch.ones(trials, 5, dtype=torch.bool)
    class_mask[:, 4] = False
    columns, chosen = random_subset_per_class(class_mask, 2, generator)
    assert columns.shape == (trials, 2) and bool(chosen.all())
    picked = torch.zeros(trials, 5)
    picked.scatter_(1, columns, 1.0)
    frequency = picked.mean(dim=0)
    # Each of the 4 candidates is kept with probability 2/4 (sd ~ 0.008).
    assert torch.allclose(frequency[:4], torch.full((4, ), 0.5), atol=0.04)
    assert frequency[4] == 0


def test_random_subset_keeps_everything_under_the_cap():
    class_mask = mask([False, True, False, True], [False] * 4)
    columns, chosen = random_subset_per_class(class_mask, 3)
    assert columns[0][chosen[0]].tolist() == [1, 3]
    assert not bool(chosen[1].any())


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_classes=0), 'num_classes'),
    (dict(queue_size=0), 'queue_size'),
    (dict(feat_channels=2.0), 'feat_channels'),
    (dict(max_push_per_class=0), 'max_push_per_class'),
    (dict(dtype='int64'), 'dtype'),
    (dict(dtype='floaty'), 'dtype'),
])
def test_invalid_config_is_rejected(kwargs, match):
    args = dict(num_classes=2, queue_size=4, feat_channels=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ClassMemoryBank(**args)


def test_invalid_push_is_rejected():
    bank = ClassMemoryBank(num_classes=2, queue_size=4, feat_channels=3)
    with pytest.raises(ValueError, match='keys'):
        bank.push(torch.zeros(4, 2), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='class_mask'):
        bank.push(torch.zeros(4, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match='class_mask'):
        bank.push(torch.zeros(4, 3), torch.zeros(3, 4, dtype=torch.bool))


def test_registry_builds_the_bank():
    bank = MODELS.build(
        dict(type='ClassMemoryBank', num_classes=2, queue_size=7,
             feat_channels=3, max_push_per_class=5, dtype='bfloat16'))
    assert isinstance(bank, ClassMemoryBank)
    assert bank.keys.shape == (2, 7, 3)
    assert bank.keys.dtype == torch.bfloat16
    assert bank.max_push_per_class == 5


def _ddp_worker(rank, world_size, init_method, out_dir, cap):
    with gloo_group(rank, world_size, init_method):
        bank = ClassMemoryBank(num_classes=2, queue_size=6, feat_channels=1,
                               max_push_per_class=cap)
        # Rank r pushes keys 10r+1..10r+3; class 1 only gets the last one.
        keys = scalar_keys(*(10 * rank + k for k in (1, 2, 3)))
        bank.push(keys, mask([True, True, True], [False, False, True]))
        torch.save(bank.state_dict(), os.path.join(out_dir, f'{rank}.pth'))


@pytest.mark.parametrize('cap', [None, 3])
def test_ddp_push_gathers_all_ranks_in_rank_order(tmp_path, cap):
    spawn_gloo_workers(_ddp_worker, str(tmp_path), cap)
    states = [torch.load(tmp_path / f'{rank}.pth') for rank in range(2)]
    for name in ('keys', 'ptr', 'count'):
        assert torch.equal(states[0][name], states[1][name]), name
    keys = states[0]['keys'][..., 0]
    assert keys[0].tolist() == [1, 2, 3, 11, 12, 13]
    assert keys[1].tolist() == [3, 13, 0, 0, 0, 0]
    assert states[0]['count'].tolist() == [6, 2]
    assert states[0]['ptr'].tolist() == [0, 2]


def _ddp_two_steps_worker(rank, world_size, init_method, out_dir, cap):
    with gloo_group(rank, world_size, init_method):
        bank = ClassMemoryBank(num_classes=2, queue_size=8, feat_channels=1,
                               max_push_per_class=cap)
        generator = torch.Generator().manual_seed(rank)
        for step in (1, 2):
            # Key 100 * step + 10 * rank + i: 8 keys (a whole queue) for
            # class 0, one for class 1.
            keys = scalar_keys(*(100 * step + 10 * rank + i
                                 for i in range(8)))
            class_mask = torch.zeros(2, 8, dtype=torch.bool)
            class_mask[0] = True
            class_mask[1, 0] = True
            bank.push(keys, class_mask, generator=generator)
            torch.save(dict(bank.state_dict(),
                            warned=bank._overwrite_warned),
                       os.path.join(out_dir, f'{rank}-{step}.pth'))


def _origins(queue):
    """(step, rank) of each filled slot of a queue of scalar keys."""
    return sorted((int(key) // 100, int(key) % 100 // 10) for key in queue)


def test_ddp_capped_push_keeps_an_equal_share_of_every_rank(tmp_path):
    """Issue "Paper fidelity", U2PL item 6: 2 ranks offer 8 keys each to a
    queue of 8 and push 2 each; the queue keeps both ranks' keys in equal
    numbers, and after a second step the keys of both steps."""
    spawn_gloo_workers(_ddp_two_steps_worker, str(tmp_path), 2)
    for step in (1, 2):
        states = [torch.load(tmp_path / f'{rank}-{step}.pth')
                  for rank in range(2)]
        for name in ('keys', 'ptr', 'count'):
            assert torch.equal(states[0][name], states[1][name]), name
        assert not states[0]['warned']
        keys = states[0]['keys'][..., 0]
        count = states[0]['count'].tolist()
        assert count == [4 * step, 2 * step]
        queue = keys[0, :count[0]]
        assert len(set(queue.tolist())) == count[0]
        assert bool(((queue % 100) % 10 < 8).all())  # offered keys only
        assert _origins(queue) == sorted(
            (s, r) for s in range(1, step + 1) for r in (0, 1)
            for _ in range(2))
        assert _origins(keys[1, :count[1]]) == [
            (s, r) for s in range(1, step + 1) for r in (0, 1)]


def test_ddp_uncapped_push_keeps_only_the_last_rank(tmp_path):
    """Why the cap: without it the 16 gathered keys overflow the queue of 8
    and rank 1's overwrite rank 0's, every step (and the bank warns)."""
    spawn_gloo_workers(_ddp_two_steps_worker, str(tmp_path), None)
    for step in (1, 2):
        state = torch.load(tmp_path / f'0-{step}.pth')
        assert state['warned']
        assert _origins(state['keys'][0, :, 0]) == [(step, 1)] * 8


def test_overwrite_warning_is_given_once(monkeypatch):
    messages = []
    monkeypatch.setattr(class_memory_bank, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    bank = ClassMemoryBank(num_classes=2, queue_size=30000, feat_channels=1,
                           max_push_per_class=1875)
    bank._warn_if_ranks_overwrite(world_size=16, num_candidates=10**5)
    assert messages == []
    bank._warn_if_ranks_overwrite(world_size=32, num_candidates=10**5)
    bank._warn_if_ranks_overwrite(world_size=32, num_candidates=10**5)
    assert len(messages) == 1
    assert 'max_push_per_class <= 468' in messages[0]
    uncapped = ClassMemoryBank(num_classes=2, queue_size=30000,
                               feat_channels=1)
    uncapped._warn_if_ranks_overwrite(world_size=8, num_candidates=3750)
    assert len(messages) == 1
    uncapped._warn_if_ranks_overwrite(world_size=8, num_candidates=3751)
    assert len(messages) == 2
