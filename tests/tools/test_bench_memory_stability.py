"""Pure parts of tools/benchmark/bench_memory_stability.py."""
import os

import pytest

from helpers import load_script

bench = load_script('tools', 'benchmark', 'bench_memory_stability.py')


def test_slope_is_mib_per_100_iterations():
    # 0.3 MiB per iteration -> 30 MiB per 100, whatever the offset.
    points = [(it, 1000.0 + 0.3 * it) for it in range(0, 200, 10)]
    assert bench.slope_per_100(points) == pytest.approx(30.0)
    assert bench.slope_per_100([(10, 5.0), (20, 5.0), (30, 5.0)]) == 0.0
    assert bench.slope_per_100([(10, 5.0)]) == 0.0
    # Noise around a flat line: least squares, not end minus start.
    assert bench.slope_per_100([(0, 10.0), (100, 12.0), (200, 10.0)]) == 0.0


def test_verdict_threshold_is_inclusive():
    assert bench.verdict(5.0, 5.0) == 'flat'
    assert bench.verdict(5.01, 5.0) == 'growing'
    assert bench.verdict(-3.0, 5.0) == 'flat'


def test_rss_of_this_process_matches_proc_statm():
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    expected = pages * os.sysconf('SC_PAGE_SIZE')
    assert bench.process_rss_bytes() == pytest.approx(expected, rel=0.05)


def test_set_crop_reaches_multi_branch_pipelines():
    pipeline = [
        dict(type='RandomCrop', crop_size=(256, 320)),
        dict(type='MultiBranch', branches=dict(weak=[
            dict(type='RandomCrop', crop_size=(1, 1))])),
        dict(type='RandomFlip')]
    assert bench.set_crop(pipeline, (64, 64)) == 2
    assert pipeline[0]['crop_size'] == (64, 64)
    assert pipeline[1]['branches']['weak'][0]['crop_size'] == (64, 64)


def test_arguments_are_checked():
    args = bench.parse_args(['a.py', '--iters', '100'])
    assert (args.warmup, args.interval, args.threshold) == (20, 10, 5.0)
    with pytest.raises(SystemExit):
        bench.parse_args(['a.py', '--crop', '1', '2', '3'])
    with pytest.raises(SystemExit):
        bench.parse_args(['a.py', '--iters', '10', '--warmup', '10'])
