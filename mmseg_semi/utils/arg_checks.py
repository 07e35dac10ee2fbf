"""Checks of scalar arguments, for the constructors of registered components.

Each function raises ``ValueError`` naming the argument and the value it
got (e.g. ``momentum must be a number in [0, 1), got 1.0``) and otherwise
returns the value, so a constructor checks and stores in one line::

    self.momentum = float(check_number('momentum', momentum, 0, 1,
                                       high_open=True))

``bool`` is never accepted as a number (``True`` is an ``int`` in Python,
but ``alpha=True`` in a config is a mistake), and NaN never passes.
"""
import math
from numbers import Real
from typing import Any, Collection, Optional, Tuple


def check_int(name: str,
              value: Any,
              minimum: Optional[int] = None,
              maximum: Optional[int] = None) -> int:
    """``value`` must be an ``int`` (not a bool) in ``[minimum, maximum]``.

    Args:
        name: Argument name, for the message.
        value: The value given.
        minimum: Smallest allowed value (inclusive); None for no bound.
        maximum: Largest allowed value (inclusive); None for no bound.

    Returns:
        ``value``.
    """
    if isinstance(value, bool) or not isinstance(value, int) \
            or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        raise ValueError(f'{name} must be an int'
                         f'{_bounds(minimum, maximum, False, False)}, '
                         f'got {value!r}')
    return value


def check_number(name: str,
                 value: Any,
                 low: Optional[float] = None,
                 high: Optional[float] = None,
                 low_open: bool = False,
                 high_open: bool = False) -> Real:
    """``value`` must be a real number (not a bool, not NaN) within bounds.

    Args:
        name: Argument name, for the message.
        value: The value given; any ``numbers.Real`` (int, float, numpy
            scalar) is accepted.
        low: Lower bound; None for no bound.
        high: Upper bound; None for no bound.
        low_open: Exclude ``low`` itself (``value > low``); by default
            ``value >= low``.
        high_open: Exclude ``high`` itself (``value < high``); by default
            ``value <= high``.

    Returns:
        ``value``, unchanged (not converted to float).
    """
    if not _is_number_within(value, low, high, low_open, high_open):
        raise ValueError(f'{name} must be a number'
                         f'{_bounds(low, high, low_open, high_open)}, '
                         f'got {value!r}')
    return value


def check_range(name: str,
                value: Any,
                low: Optional[float] = None,
                high: Optional[float] = None,
                low_open: bool = False,
                high_open: bool = False) -> Tuple[float, float]:
    """``value`` must be an ordered pair ``(a, b)``, ``a <= b``, of numbers
    that both lie within the bounds (as in :func:`check_number`).

    Args:
        name: Argument name, for the message.
        value: The value given: a tuple or list of two numbers.
        low, high, low_open, high_open: Bounds of both numbers, as in
            :func:`check_number`.

    Returns:
        ``(float(a), float(b))``.
    """
    if not isinstance(value, (tuple, list)) or len(value) != 2 \
            or not all(_is_number_within(v, low, high, low_open, high_open)
                       for v in value) or value[0] > value[1]:
        bounds = _bounds(low, high, low_open, high_open)
        raise ValueError(f'{name} must be an ordered pair (low <= high) of '
                         f'numbers{" each" if bounds else ""}{bounds}, '
                         f'got {value!r}')
    return float(value[0]), float(value[1])


def check_choice(name: str, value: Any, choices: Collection) -> Any:
    """``value`` must be one of ``choices``.

    Returns:
        ``value``.
    """
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices!r}, got {value!r}')
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` must be ``True`` or ``False`` (not 0, 1 or None).

    Returns:
        ``value``.
    """
    if not isinstance(value, bool):
        raise ValueError(f'{name} must be True or False, got {value!r}')
    return value


def _is_number_within(value: Any, low: Optional[float],
                      high: Optional[float], low_open: bool,
                      high_open: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real) \
            or math.isnan(value):
        return False
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    """' in [0, 1)', ' >= 0', ' < 1' or ''."""
    if low is not None and high is not None:
        return (f' in {"(" if low_open else "["}{low}, '
                f'{high}{")" if high_open else "]"}')
    if low is not None:
        return f' {">" if low_open else ">="} {low}'
    if high is not None:
        return f' {"<" if high_open else "<="} {high}'
    return ''
