"""Peak memory of the test suite, per test (issue 16, item 8).

Runs pytest in this process with a plugin that, around every test, resets
the kernel's peak-RSS counter of this process (``/proc/self/clear_refs``,
value 5) and reads it back afterwards (``VmHWM``), so each test gets its own
exact peak. A sampling thread adds the resident memory of the child
processes (subprocess tests: dist_train, demo, set-up) every 0.1 s, so the
table also shows what the whole process tree held while a test ran.

Linux only. Usage (arguments after ``--`` go to pytest)::

    python tools/benchmark/bench_test_suite_memory.py --top 25 \
        --json work_dirs/suite_memory.json -- tests -q -p no:cacheprovider

For the figure the kernel sees, wrap it in ``/usr/bin/time -v`` (its
"Maximum resident set size" is the largest single process).
"""
import argparse
import json
import os
import sys
import threading
import time

import pytest

from mmseg_semi.utils.process_memory import reset_peak_rss, status_kib

_KIB_PER_MB = 1024


def _children(pid):
    """All descendants of ``pid`` (from /proc/<pid>/task/*/children)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f'/proc/{parent}/task')
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f'/proc/{parent}/task/{tid}/children') as f:
                    kids = [int(p) for p in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def _children_rss_kib(pid):
    # A child that exited between the listing and the read counts 0.
    return sum(status_kib('VmRSS', child) or 0 for child in _children(pid))


class SuiteMemoryPlugin:

    def __init__(self, interval=0.1):
        self.interval = interval
        self.records = []
        self._child_peak = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self):
        while not self._stop.wait(self.interval):
            rss = _children_rss_kib(self._pid)
            with self._lock:
                self._child_peak = max(self._child_peak, rss)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        reset_peak_rss()
        with self._lock:
            self._child_peak = 0
        before = status_kib('VmRSS')
        start = time.perf_counter()
        yield
        self.records.append(
            dict(
                test=item.nodeid,
                seconds=round(time.perf_counter() - start, 2),
                rss_before_mb=round(before / _KIB_PER_MB),
                peak_mb=round(status_kib('VmHWM') / _KIB_PER_MB),
                rss_after_mb=round(status_kib('VmRSS') / _KIB_PER_MB),
                children_peak_mb=round(self._child_peak / _KIB_PER_MB)))

    def close(self):
        self._stop.set()
        self._thread.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--top', type=int, default=20)
    parser.add_argument('--json', help='write every test\'s record here')
    parser.add_argument('pytest_args', nargs='*')
    args = parser.parse_args()
    plugin = SuiteMemoryPlugin()
    code = pytest.main(args.pytest_args or ['tests', '-q'], plugins=[plugin])
    plugin.close()
    records = plugin.records
    if not records:
        print('no test ran')
        return int(code)
    for rec in records:
        rec['tree_peak_mb'] = rec['peak_mb'] + rec['children_peak_mb']
    worst = sorted(records, key=lambda r: -r['tree_peak_mb'])[:args.top]
    print(f'\n{"tree MB":>8} {"self MB":>8} {"child MB":>8} '
          f'{"before":>7} {"after":>7} {"s":>7}  test')
    for rec in worst:
        print(f'{rec["tree_peak_mb"]:8d} {rec["peak_mb"]:8d} '
              f'{rec["children_peak_mb"]:8d} {rec["rss_before_mb"]:7d} '
              f'{rec["rss_after_mb"]:7d} {rec["seconds"]:7.1f}  '
              f'{rec["test"]}')
    print(f'\nsuite: {len(records)} tests, largest self peak '
          f'{max(r["peak_mb"] for r in records)} MB, largest tree peak '
          f'{worst[0]["tree_peak_mb"]} MB, resident at the end '
          f'{records[-1]["rss_after_mb"]} MB')
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)),
                    exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(records, f, indent=1)
    return int(code)


if __name__ == '__main__':
    sys.exit(main())
