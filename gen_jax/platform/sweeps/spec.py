"""What a sweep is: a sweep file's override dicts, checked, as trials with stable ids.

A sweep file is Python with `get_sweep()` returning a list of override dicts, each
mapping dotted config fields to values (`{'optim.lr': 1e-3, 'model.ch_mult': (1, 2)}`);
`product` builds grids, and lists concatenate. A trial's id names its overrides
(`lr=0.001,ch_mult=1-2`), so it does not change when trials are added to the file, and
`WORKDIR/<id>` stays that trial's workdir across reruns.
"""

import copy
import dataclasses
import difflib
import hashlib
import itertools
import numbers
import re
import runpy

from gen_jax.platform.errors import UserError

# `sweep.*` fields only the launcher reads: left out of the trials' commands.
LAUNCHER_FIELDS = ('sweep.parallel', 'sweep.accelerators', 'sweep.num_nodes',
                   'sweep.use_spot', 'sweep.bucket', 'sweep.infra', 'sweep.tpu_runtime',
                   'sweep.setup')
_MAX_ID_LENGTH = 120  # trial ids are directory names and parts of cloud job names


@dataclasses.dataclass(frozen=True)
class Trial:
  """One run of a sweep."""
  id: str  # names the overrides; the trial's workdir is WORKDIR/<id>
  overrides: dict  # {dotted config field: value}, as the sweep file gave them
  config: object  # the trial's resolved ConfigDict (the command's config + overrides)


def product(axes: dict) -> list[dict]:
  """Every combination of the values of `axes` ({field: [values]}), the last field fastest.

  >>> product({'optim.lr': [1e-3, 3e-3], 'seed': [0, 1]})[1]
  {'optim.lr': 0.001, 'seed': 1}
  """
  fields = list(axes)
  return [dict(zip(fields, values)) for values in itertools.product(*axes.values())]


def load(path: str) -> list[dict]:
  """Runs the sweep file's `get_sweep()`; one-line errors for what is not a sweep."""
  try:
    namespace = runpy.run_path(path, run_name='gen_jax_sweep')
  except FileNotFoundError:
    raise UserError(f'--sweep={path}: no such file.') from None
  except Exception as e:  # pylint: disable=broad-except  # the user's code: say what failed
    raise UserError(f'--sweep={path} failed to load: {type(e).__name__}: '
                    f'{" ".join(str(e).split())}') from None
  if not callable(namespace.get('get_sweep')):
    raise UserError(f'--sweep={path} has no get_sweep() returning a list of override dicts.')
  try:
    sweep = namespace['get_sweep']()
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'--sweep={path}: get_sweep() raised {type(e).__name__}: '
                    f'{" ".join(str(e).split())}') from None
  if not isinstance(sweep, (list, tuple)) or not all(
      isinstance(o, dict) and all(isinstance(k, str) for k in o) for o in sweep):
    raise UserError(f'--sweep={path}: get_sweep() must return a list of dicts '
                    f'{{"field.name": value}}, not {type(sweep).__name__}.')
  if not sweep:
    raise UserError(f'--sweep={path}: get_sweep() returned an empty list; nothing to run.')
  return list(sweep)


def _field_names(config, prefix: str = '') -> list[str]:
  names = []
  for key, value in config.items():
    names.append(prefix + key)
    if hasattr(value, 'items'):
      names += _field_names(value, f'{prefix}{key}.')
  return names


def _apply(config, overrides: dict, where: str):
  """A copy of `config` with `overrides` set, type-checked like command-line overrides."""
  config = copy.deepcopy(config)
  for field, value in overrides.items():
    *parents, name = field.split('.')
    node = config
    for part in parents:
      node = node.get(part) if hasattr(node, 'keys') else None
    if not hasattr(node, 'keys') or name not in node:
      close = difflib.get_close_matches(field, _field_names(config), n=1)
      hint = f'did you mean {close[0]!r}?' if close else 'see the config file'
      raise UserError(f'{where}: unknown config field {field!r}; {hint}')
    if isinstance(node[name], tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      setattr(node, name, value)
    except (TypeError, ValueError) as e:
      raise UserError(f'{where}: {field}={value!r} does not fit the config: '
                      f'{" ".join(str(e).split())}') from None
  return config


def _id_value(value) -> str:
  if isinstance(value, (list, tuple)):
    return '-'.join(_id_value(v) for v in value) or 'none'
  if isinstance(value, float):
    return repr(value)
  return re.sub(r'[^A-Za-z0-9._+-]+', '_', str(value)) or 'none'


def trial_id(overrides: dict, all_fields) -> str:
  """'lr=0.001,ch_mult=1-2': each field by its last name unless another field of the
  sweep shares it (then in full); 'base' when there are no overrides."""
  last = [f.split('.')[-1] for f in all_fields]
  parts = []
  for field, value in overrides.items():
    name = field.split('.')[-1]
    parts.append(f'{name if last.count(name) == 1 else field}={_id_value(value)}')
  text = ','.join(parts) or 'base'
  if len(text) <= _MAX_ID_LENGTH:
    return text
  return f'{text[:_MAX_ID_LENGTH - 9]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}'


def _plain(value):
  """numpy scalars and arrays (np.logspace in a sweep file) as Python values."""
  if hasattr(value, 'tolist') and not isinstance(value, (list, tuple, dict)):
    value = value.tolist()
  if isinstance(value, (list, tuple)):
    return type(value)(_plain(v) for v in value)
  return value


def expand(config, sweep: list[dict], where: str) -> list[Trial]:
  """The trials of `sweep` on top of `config`, with ids; one-line errors for unknown
  fields, values that do not fit, and trials that would share a workdir."""
  all_fields = list(dict.fromkeys(f for overrides in sweep for f in overrides))
  trials, seen = [], {}
  for i, overrides in enumerate(sweep):
    label = f'{where} trial {i}'
    overrides = {field: _plain(value) for field, value in overrides.items()}
    trial = Trial(trial_id(overrides, all_fields), dict(overrides),
                  _apply(config, overrides, label))
    if trial.id in seen:
      raise UserError(f'{label} has the id {trial.id!r} of trial {seen[trial.id]}: two '
                      f'trials would share one workdir; make their overrides differ.')
    seen[trial.id] = i
    trials.append(trial)
  return trials


def flag_value(value) -> str:
  """A config value as `--config.field=` text that ml_collections parses back to it."""
  if hasattr(value, 'to_dict'):  # a ConfigDict field such as sweep.vmap
    value = value.to_dict()
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, str):
    return value
  if isinstance(value, (list, tuple)):  # '(1,2,2)': one shell word, as users write it
    return '(' + ','.join(repr(v) for v in value) + (',)' if len(value) == 1 else ')')
  if isinstance(value, (numbers.Number, dict)) or value is None:
    return repr(value)
  raise UserError(f'cannot pass {value!r} ({type(value).__name__}) as a --config flag.')


def trial_flags(base_overrides: dict, trial: Trial) -> list[str]:
  """`--config.k=v` flags of a trial: the sweep command's own overrides, then the trial's
  (which win), without the fields only the launcher reads."""
  merged = {**base_overrides, **trial.overrides}
  return [f'--config.{field}={flag_value(value)}' for field, value in merged.items()
          if field not in LAUNCHER_FIELDS]
