"""mmseg_semi.utils.process_memory against the kernel's own counters."""
import ctypes
import sys

import pytest

from mmseg_semi.utils.process_memory import (release_freed_heap,
                                             reset_peak_rss, status_kib)

MIB = 1024  # KiB

linux = pytest.mark.skipif(not sys.platform.startswith('linux'),
                           reason='reads /proc')


def touched(size):
    block = bytearray(size)
    block[::4096] = b'x' * len(range(0, size, 4096))  # make pages resident
    return block


@linux
def test_peak_follows_an_allocation_and_restarts_at_the_current_size():
    before = status_kib('VmRSS')
    assert before > 0
    block = touched(200 * 2**20)
    assert status_kib('VmRSS') - before >= 190 * MIB
    del block
    assert status_kib('VmHWM') - before >= 190 * MIB
    assert reset_peak_rss()
    assert status_kib('VmHWM') - status_kib('VmRSS') < 20 * MIB


@linux
def test_freed_heap_between_live_blocks_goes_back_to_the_system():
    try:
        ctypes.CDLL(None).malloc_trim
    except AttributeError:
        pytest.skip('not glibc: nothing to trim')
    # 64 KiB blocks live in malloc's heap (below its mmap threshold); freeing
    # every other one leaves holes that free() cannot give back by itself.
    blocks = [touched(64 * 1024) for _ in range(4000)]
    del blocks[::2]
    held = status_kib('VmRSS')
    release_freed_heap()
    assert held - status_kib('VmRSS') >= 80 * MIB
    del blocks


def test_unknown_field_or_process_reads_none():
    assert status_kib('NoSuchField') is None
    assert status_kib('VmRSS', pid=2**31 - 1) is None
