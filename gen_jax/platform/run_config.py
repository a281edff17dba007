"""config.json and config_history.jsonl: what a resumed run may change.

A run's checkpoints were trained under the config in WORKDIR/config.json. Resuming with
a different model, diffusion process, data, seed, family or batch would silently train
something else, so those fields are refused; the fields below only say how long to train,
how often to log, sample, evaluate and checkpoint, or how to step the optimizer from here
on (what a user changes after a NaN), and each change is recorded in
WORKDIR/config_history.jsonl with the step it took effect at.

The library knows only the shared blocks' fields (`MUTABLE`); a family's own resumable
fields and renames are its own (experiments/<family>/schema.py) and reach these functions
as arguments (the family's `Experiment.RESUMABLE_FIELDS` and `Experiment.RENAMED`).
"""

import json
import os
import time

from gen_jax.platform.errors import UserError

CONFIG_NAME = 'config.json'
HISTORY_NAME = 'config_history.jsonl'

# Fields (or blocks, ending in '.') of the shared blocks a resumed run may change.
MUTABLE = (
    'training.num_steps', 'training.log_every', 'training.checkpoint_every',
    'training.sample_every', 'training.eval_every', 'training.keep_checkpoints',
    'training.async_checkpoints', 'training.compilation_cache',
    'optim.lr', 'optim.warmup_steps', 'optim.decay', 'optim.grad_clip', 'optim.b1',
    'optim.b2', 'optim.eps', 'optim.weight_decay', 'optim.ema_decay',
    'data.data_dir',  # where the same dataset lives on this machine
    'sampling.', 'eval.', 'parallel.',
    'sweep.parallel', 'sweep.accelerators', 'sweep.num_nodes', 'sweep.use_spot',
    'sweep.bucket', 'sweep.infra', 'sweep.tpu_runtime', 'sweep.setup',
)


def renamed_in(text: str, renamed: dict[str, str]) -> str:
  """'; X is now Y' for the first old field name of `renamed` ({old: new}) that `text`
  mentions ('' if none)."""
  for old, new in renamed.items():
    if old in text:
      return f'; {old} is now {new}'
  return ''


def upgrade(recorded: dict, renamed: dict[str, str],
            dropped_with_renames: tuple[str, ...] = ()) -> dict:
  """A config.json's dict with renamed fields under their new names.

  Args:
    recorded: the dict as read (left as it is).
    renamed: {old dotted field: new dotted field}. A field whose new name the config
      already has keeps that value.
    dropped_with_renames: dotted fields removed when any rename applied: what the new
      names replace (the GAN's old, unused `optim.lr`, with its `gan.g_lr` / `gan.d_lr`).
  Returns:
    A new dict.
  """
  recorded = json.loads(json.dumps(recorded))  # a copy
  applied = False
  for old, new in renamed.items():
    block, name = old.split('.')
    if name not in recorded.get(block, {}):
      continue
    value = recorded[block].pop(name)
    new_block, new_name = new.split('.')
    recorded.setdefault(new_block, {}).setdefault(new_name, value)
    applied = True
  if applied:
    for field in dropped_with_renames:
      block, name = field.split('.')
      recorded.get(block, {}).pop(name, None)
  return recorded


def complete(recorded: dict, historical_defaults: dict) -> dict:
  """A config.json's dict with every field of `historical_defaults` ({dotted field:
  value}) it lacks set to that value: a field added after the run was recorded, at the
  value the run behaved as before it existed."""
  recorded = json.loads(json.dumps(recorded))  # a copy
  for field, value in historical_defaults.items():
    block, name = field.split('.')
    recorded.setdefault(block, {}).setdefault(name, value)
  return recorded


def _flatten(tree, prefix: str = '') -> dict:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f'{prefix}{key}.'))
    return out
  return {prefix[:-1]: tree}


def _mutable(field: str, resumable: tuple[str, ...]) -> bool:
  return any(field == m or (m.endswith('.') and field.startswith(m))
             for m in MUTABLE + tuple(resumable))


def as_json(config) -> dict:
  """The config as config.json holds it (tuples as lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def read(workdir: str, renamed: dict[str, str] | None = None) -> dict | None:
  """WORKDIR/config.json (the fields of `renamed`, {old: new}, under their new names), or
  None when absent or unreadable."""
  try:
    with open(os.path.join(workdir, CONFIG_NAME)) as f:
      return upgrade(json.load(f), renamed or {})
  except (OSError, ValueError):
    return None


def changes(config, workdir: str, resumable: tuple[str, ...] = (),
            renamed: dict[str, str] | None = None) -> dict[str, tuple]:
  """{field: (recorded, now)} between WORKDIR/config.json and `config`.

  Fields one side lacks (a field added to gen_jax since) are left out.

  Args:
    config: the config the run resumes with.
    workdir: the run's directory.
    resumable: the family's fields (or blocks, ending in '.') a resume may change, besides
      the shared `MUTABLE`.
    renamed: the family's renamed fields {old: new}, so that a config.json written under
      old names compares under the new ones.

  Raises:
    UserError: a field that cannot change under a resume differs; config.json is
      left as it is.
  """
  recorded = read(workdir, renamed)
  if recorded is None:
    return {}
  old, new = _flatten(recorded), _flatten(as_json(config))
  diff = {k: (old[k], new[k]) for k in sorted(set(old) & set(new)) if old[k] != new[k]}
  fixed = {k: v for k, v in diff.items() if not _mutable(k, resumable)}
  if fixed:
    listed = ', '.join(f'{k} {v[0]!r} -> {v[1]!r}' for k, v in fixed.items())
    raise UserError(
        f'{workdir} holds a run whose checkpoints were trained with another config, which '
        f'does not fit this config: {listed} (these cannot change when resuming; '
        f'{CONFIG_NAME} there has the run\'s values). Use them, or a new --workdir.')
  return diff


def write(config, workdir: str, step: int, changed: dict[str, tuple]) -> None:
  """Writes config.json (the accepted run's config) and records `changed` in the history."""
  if changed:
    with open(os.path.join(workdir, HISTORY_NAME), 'a') as f:
      f.write(json.dumps({'step': int(step), 'time': time.strftime('%Y-%m-%dT%H:%M:%SZ',
                                                                   time.gmtime()),
                          'changes': {k: list(v) for k, v in changed.items()}}) + '\n')
  partial = os.path.join(workdir, CONFIG_NAME + '.tmp')
  with open(partial, 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
  os.replace(partial, os.path.join(workdir, CONFIG_NAME))
