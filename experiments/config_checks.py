"""Checks of config values that the families' `validate(config)` functions share.

Each family validates its own blocks before it loads data or builds a network, so a
nonsense value (a zero channel count, a multiplier list that is empty or holds a
string, groups that do not divide the channels) ends as one line naming the field,
instead of a ZeroDivisionError or TypeError from deep inside the model, or a run that
silently trains something else. Values from the command line arrive as whatever
ml_collections parsed (`--config.model.ch_mult=(1,a)` is the string '(1,a)'), and from
a saved config.json tuples are lists, so types are checked too.
"""

import numbers
from typing import Any

from gen_jax.platform.errors import UserError


def is_int(value: Any) -> bool:
  """An integer (Python or numpy), not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1) -> None:
  """`name` must be an integer >= minimum."""
  if not is_int(value) or value < minimum:
    raise UserError(f'{name} must be an integer >= {minimum}, not {value!r}.')


def check_number(name: str, value: Any, low: float, high: float,
                 high_inclusive: bool = False) -> None:
  """`name` must be a number in [low, high) (or [low, high] with high_inclusive)."""
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= value and
        (value <= high if high_inclusive else value < high))
  if not ok:
    bracket = ']' if high_inclusive else ')'
    raise UserError(f'{name} must be a number in [{low:g}, {high:g}{bracket}, not {value!r}.')


def check_int_tuple(name: str, value: Any, example: str, minimum: int = 1,
                    min_length: int = 1) -> tuple[int, ...]:
  """`name` must be a tuple (or list) of >= min_length integers, each >= minimum.

  Args:
    name: the field, e.g. 'model.ch_mult'.
    value: its value.
    example: a valid value to show, e.g. '(1, 2, 2)'.
    minimum: the least value of an entry.
    min_length: the least number of entries.
  Returns:
    The value as a tuple.
  """
  if (not isinstance(value, (tuple, list)) or len(value) < min_length or
      not all(is_int(v) and v >= minimum for v in value)):
    what = {0: 'zero or more', 1: 'one or more'}.get(min_length, f'at least {min_length}')
    shown = repr(tuple(value)) if isinstance(value, (tuple, list)) else repr(value)
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], str):
      shown = value[0]  # what ml_collections makes of an unparsable tuple: ('(1,a)',)
    raise UserError(f'{name} must be a tuple of {what} integers >= {minimum}, such as '
                    f'--config.{name}="{example}", not {shown}.')
  return tuple(value)


def check_groups(name: str, num_groups: Any, channels: list[int], what: str) -> None:
  """GroupNorm's `num_groups` (field `name`) must divide every channel count it normalises."""
  check_int(name, num_groups)
  bad = sorted({c for c in channels if c % num_groups})
  if bad:
    raise UserError(f'{name}={num_groups} must divide every channel count it normalises '
                    f'({what}: {sorted(set(channels))}), and {", ".join(map(str, bad))} '
                    f'{"is" if len(bad) == 1 else "are"} not a multiple of {num_groups}; '
                    f'choose a divisor of all of them, e.g. {_common_divisor(channels)}.')


def _common_divisor(channels: list[int]) -> int:
  """The largest power of two (at most 32) dividing every count: a num_groups that fits."""
  g = 32
  while g > 1 and any(c % g for c in channels):
    g //= 2
  return g
