"""The tests mirror the package: tests/models/pseudo_labelers/ tests
mmseg_semi/models/pseudo_labelers/, and so on; tests/configs/ checks the
config files, tests/tools/ the scripts under tools/, tests/system/ the whole
(training end to end, golden steps, docs, import layers, registry).

The folders are not packages, so pytest imports every test module by its
basename (its default ``prepend`` import mode): basenames must stay unique
across folders. Shared helpers live in ``tests/helpers.py``; this file puts
``tests/`` on ``sys.path`` so that every test module, in whatever folder,
imports them as ``from helpers import ...``.
"""
import ctypes
import gc
import os.path as osp
import sys

import pytest

TESTS_DIR = osp.dirname(osp.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


# ------------------------------------------------------------ memory
# Building R-101 segmentors leaves hundreds of MB in glibc's heap after the
# models are freed; without returning it, a few such tests in a row took the
# process to 3 GB (issue 16 item 8; tools/benchmark/bench_test_suite_memory.py
# measures it). Trimming costs a few ms, so it runs only when the process is
# above the threshold.
_TRIM_ABOVE_KB = 1024 * 1024


def _resident_kb() -> int:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None  # not glibc (macOS, musl): nothing to trim


_MALLOC_TRIM = _malloc_trim()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield  # after the test's fixtures are torn down
    if _MALLOC_TRIM is not None and _resident_kb() > _TRIM_ABOVE_KB:
        gc.collect()
        _MALLOC_TRIM(0)
