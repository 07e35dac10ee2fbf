"""mmseg_semi.utils.arg_checks: accepted values come back, everything else
raises ValueError naming the argument and the value."""
import math
import re

import numpy as np
import pytest

from mmseg_semi.utils.arg_checks import (check_bool, check_choice, check_int,
                                         check_number, check_range)


def raises_naming(name, value):
    """pytest.raises(ValueError) whose message names ``name`` and
    ``value!r``."""
    return pytest.raises(
        ValueError,
        match=f'^{re.escape(name)} must .*, got {re.escape(repr(value))}$')


# ------------------------------------------------------------- check_int
def test_check_int_returns_accepted_values():
    assert check_int('n', 0) == 0
    assert check_int('n', -7) == -7
    assert check_int('n', 3, minimum=3) == 3
    assert check_int('n', 5, maximum=5) == 5
    assert check_int('n', -1, -1, 7) == -1
    assert check_int('n', 7, -1, 7) == 7


@pytest.mark.parametrize('value', [True, False, 1.0, '1', None, np.int64(1)])
def test_check_int_rejects_non_ints(value):
    with raises_naming('num_classes', value):
        check_int('num_classes', value)


def test_check_int_bounds_are_inclusive_and_named():
    with pytest.raises(ValueError,
                       match=r'^queue_size must be an int >= 1, got 0$'):
        check_int('queue_size', 0, minimum=1)
    with pytest.raises(ValueError, match=r'^n must be an int <= 3, got 4$'):
        check_int('n', 4, maximum=3)
    with pytest.raises(ValueError,
                       match=r'^frozen_stages must be an int in \[-1, 7\], '
                       r'got -2$'):
        check_int('frozen_stages', -2, -1, 7)
    with raises_naming('frozen_stages', 8):
        check_int('frozen_stages', 8, -1, 7)


# ---------------------------------------------------------- check_number
def test_check_number_returns_the_value_unchanged():
    assert check_number('x', 0) == 0 and type(check_number('x', 0)) is int
    assert check_number('x', 0.5, 0, 1) == 0.5
    value = np.float32(0.25)
    assert check_number('x', value, 0, 1) is value
    assert check_number('x', math.inf, low=0) == math.inf
    assert check_number('x', -3.0) == -3.0


@pytest.mark.parametrize('value', [True, False, '0.5', None, [0.5]])
def test_check_number_rejects_non_numbers(value):
    with raises_naming('momentum', value):
        check_number('momentum', value, 0, 1)
    with raises_naming('momentum', value):
        check_number('momentum', value)


def test_check_number_rejects_nan_even_without_bounds():
    with pytest.raises(ValueError, match=r'^eta must be a number, got nan$'):
        check_number('eta', math.nan)
    with raises_naming('eta', math.nan):
        check_number('eta', math.nan, low=0)


def test_check_number_closed_bounds_accept_the_bound():
    assert check_number('p', 0, 0, 1) == 0
    assert check_number('p', 1, 0, 1) == 1
    assert check_number('w', 0.0, low=0) == 0.0
    assert check_number('w', 2.0, high=2) == 2.0


def test_check_number_open_bounds_refuse_the_bound():
    with pytest.raises(ValueError, match=r'^momentum must be a number in '
                       r'\[0, 1\), got 1\.0$'):
        check_number('momentum', 1.0, 0, 1, high_open=True)
    assert check_number('momentum', 0.0, 0, 1, high_open=True) == 0.0
    with pytest.raises(ValueError, match=r'^rate must be a number in '
                       r'\(0, 1\], got 0$'):
        check_number('rate', 0, 0, 1, low_open=True)
    assert check_number('rate', 1, 0, 1, low_open=True) == 1
    with pytest.raises(ValueError, match=r'^temperature must be a number > '
                       r'0, got 0\.0$'):
        check_number('temperature', 0.0, low=0, low_open=True)
    with pytest.raises(ValueError,
                       match=r'^x must be a number < 1, got 1$'):
        check_number('x', 1, high=1, high_open=True)


def test_check_number_one_sided_messages():
    with pytest.raises(ValueError, match=r'^loss_weight must be a number >= '
                       r'0, got -0\.1$'):
        check_number('loss_weight', -0.1, low=0)
    with pytest.raises(ValueError,
                       match=r'^x must be a number <= 1, got 1\.5$'):
        check_number('x', 1.5, high=1)


# ----------------------------------------------------------- check_range
def test_check_range_returns_a_float_pair():
    assert check_range('r', (1, 2)) == (1.0, 2.0)
    assert check_range('r', [0.5, 0.5], 0, 1) == (0.5, 0.5)
    assert check_range('r', (0, 1), 0, 1) == (0.0, 1.0)
    result = check_range('r', [1, 3], low=0, low_open=True)
    assert result == (1.0, 3.0) and all(type(v) is float for v in result)


@pytest.mark.parametrize('value', [
    (2, 1),  # not ordered
    (1, ),
    (1, 2, 3),
    '12',
    0.5,
    None,
    (True, 2),
    (0.5, math.nan),
    ('0', '1'),
])
def test_check_range_rejects_bad_pairs(value):
    with raises_naming('sigma_range', value):
        check_range('sigma_range', value)


def test_check_range_bounds_apply_to_both_ends():
    with pytest.raises(ValueError, match=r'^area_ratio_range must be an '
                       r'ordered pair \(low <= high\) of numbers each in '
                       r'\(0, 1\], got \(0\.5, 1\.5\)$'):
        check_range('area_ratio_range', (0.5, 1.5), 0, 1, low_open=True)
    with raises_naming('area_ratio_range', (0, 0.5)):
        check_range('area_ratio_range', (0, 0.5), 0, 1, low_open=True)
    assert check_range('area_ratio_range', (0.1, 1), 0, 1,
                       low_open=True) == (0.1, 1.0)
    with raises_naming('hue', (-0.6, 0.1)):
        check_range('hue', (-0.6, 0.1), -0.5, 0.5)
    with pytest.raises(ValueError, match=r'^m must be an ordered pair '
                       r'\(low <= high\) of numbers, got \(3, 1\)$'):
        check_range('m', (3, 1))


# ---------------------------------------------------------- check_choice
def test_check_choice():
    assert check_choice('schedule', 'linear',
                        ('linear', 'constant')) == 'linear'
    assert check_choice('nonfinite_loss', None, ('raise', None)) is None
    assert check_choice('output_stride', 16, (8, 16, 32)) == 16
    with pytest.raises(ValueError, match=r"^schedule must be one of "
                       r"\('linear', 'constant'\), got 'cosine'$"):
        check_choice('schedule', 'cosine', ('linear', 'constant'))
    with raises_naming('predict_on', 'ema'):
        check_choice('predict_on', 'ema', ['teacher', 'student'])


# ------------------------------------------------------------ check_bool
def test_check_bool():
    assert check_bool('class_wise', True) is True
    assert check_bool('class_wise', False) is False
    for value in (0, 1, None, 'True', np.bool_(True)):
        with raises_naming('class_wise', value):
            check_bool('class_wise', value)
