"""tools/benchmark/bench_test_suite_memory.py: each test's own peak, and the
children's memory, on a generated test file run in a subprocess."""
import json
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO_ROOT

SCRIPT = f'{REPO_ROOT}/tools/benchmark/bench_test_suite_memory.py'

TESTS = '''
import subprocess
import sys
import time

MB = 2 ** 20


def touch(size):
    block = bytearray(size)
    block[::4096] = b'x' * len(range(0, size, 4096))  # make pages resident
    return block


def test_a_large_allocation():
    touch(300 * MB)


def test_a_small_one_after_it():
    touch(1 * MB)


def test_a_child_process():
    code = ('import time; b = bytearray(200 * 2 ** 20); '
            'b[::4096] = b"x" * len(range(0, len(b), 4096)); time.sleep(1)')
    subprocess.run([sys.executable, '-c', code], check=True)
'''


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='reads /proc')
def test_each_test_gets_its_own_peak_and_its_childrens(tmp_path):
    (tmp_path / 'test_generated.py').write_text(textwrap.dedent(TESTS))
    out = tmp_path / 'records.json'
    result = subprocess.run(
        [sys.executable, SCRIPT, '--json', str(out), '--',
         str(tmp_path / 'test_generated.py'), '-q', '-p', 'no:cacheprovider'],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'suite: 3 tests' in result.stdout
    records = {
        r['test'].split('::')[1]: r
        for r in json.loads(out.read_text())
    }
    large = records['test_a_large_allocation']
    small = records['test_a_small_one_after_it']
    child = records['test_a_child_process']
    assert large['peak_mb'] - large['rss_before_mb'] >= 290
    # The counter was reset: the large test's peak does not carry over.
    assert small['peak_mb'] < large['peak_mb'] - 250
    assert child['children_peak_mb'] >= 180
    assert child['tree_peak_mb'] == \
        child['peak_mb'] + child['children_peak_mb']
    assert large['children_peak_mb'] < 50
