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
import os.path as osp
import sys

import pytest

from mmseg_semi.utils.process_memory import release_freed_heap, status_kib

TESTS_DIR = osp.dirname(osp.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


# ------------------------------------------------------------ memory
# Building R-101 segmentors leaves hundreds of MB in glibc's heap after the
# models are freed; without returning it, a few such tests in a row took the
# process to 3 GB (issue 16 item 8; tools/benchmark/bench_test_suite_memory.py
# measures it). Trimming costs a few ms, so it runs only when the process is
# above 1 GiB.
_TRIM_ABOVE_KIB = 1024 * 1024


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield  # after the test's fixtures are torn down
    if (status_kib('VmRSS') or 0) > _TRIM_ABOVE_KIB:
        release_freed_heap()
