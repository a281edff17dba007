"""config.json and config_history.jsonl: what a resumed run may change.

A run's checkpoints were trained under the config in WORKDIR/config.json. Resuming with
a different model, diffusion process, data, seed, family or batch would silently train
something else, so those fields are refused; the fields below only say how long to train,
how often to log, sample, evaluate and checkpoint, or how to step the optimizer from here
on (what a user changes after a NaN), and each change is recorded in
WORKDIR/config_history.jsonl with the step it took effect at.
"""

import json
import os
import time

from gen_jax.platform.errors import UserError

CONFIG_NAME = 'config.json'
HISTORY_NAME = 'config_history.jsonl'

# Fields (or blocks, ending in '.') a resumed run may change.
MUTABLE = (
    'training.num_steps', 'training.log_every', 'training.checkpoint_every',
    'training.sample_every', 'training.eval_every', 'training.keep_checkpoints',
    'training.async_checkpoints', 'training.compilation_cache',
    'optim.lr', 'optim.warmup_steps', 'optim.decay', 'optim.grad_clip', 'optim.b1',
    'optim.b2', 'optim.eps', 'optim.weight_decay', 'optim.ema_decay',
    'optim.g_lr', 'optim.d_lr',
    'data.data_dir',  # where the same dataset lives on this machine
    'sampling.', 'eval.', 'parallel.',
    'sweep.parallel', 'sweep.accelerators', 'sweep.num_nodes', 'sweep.use_spot',
    'sweep.bucket', 'sweep.infra', 'sweep.tpu_runtime', 'sweep.setup',
)


# Fields that were renamed (one name per concept): old -> new. A command line with an old
# name is refused, naming the new one (launch.py); a run's config.json written under the
# old names reads as if written under the new ones (`upgrade`).
RENAMED = {
    'gan.g_lr': 'optim.g_lr',
    'gan.d_lr': 'optim.d_lr',
    'gan.ema_decay': 'optim.ema_decay',
    'gan.ema_start': 'optim.ema_start',
    'vae.eval_batch_size': 'eval.batch_size',
    'vae.eval_examples': 'eval.held_out_examples',
    'eval.vlb_examples': 'eval.held_out_examples',
}


def renamed_in(text: str) -> str:
  """'; X is now Y' for the first old field name `text` mentions ('' if none)."""
  for old, new in RENAMED.items():
    if old in text:
      return f'; {old} is now {new}'
  return ''


def upgrade(recorded: dict) -> dict:
  """A config.json's dict with renamed fields under their new names.

  A field whose new name the config already has keeps that value (the GAN's old
  `optim.lr`, unused, is dropped with its `gan.g_lr` / `gan.d_lr`).
  """
  recorded = json.loads(json.dumps(recorded))  # a copy
  renamed = False
  for old, new in RENAMED.items():
    block, name = old.split('.')
    if name not in recorded.get(block, {}):
      continue
    value = recorded[block].pop(name)
    new_block, new_name = new.split('.')
    recorded.setdefault(new_block, {}).setdefault(new_name, value)
    renamed = True
  if renamed and recorded.get('family') == 'gan':
    recorded.get('optim', {}).pop('lr', None)
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


def _mutable(field: str) -> bool:
  return any(field == m or (m.endswith('.') and field.startswith(m)) for m in MUTABLE)


def as_json(config) -> dict:
  """The config as config.json holds it (tuples as lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def read(workdir: str) -> dict | None:
  """WORKDIR/config.json (renamed fields under their new names), or None when absent or
  unreadable."""
  try:
    with open(os.path.join(workdir, CONFIG_NAME)) as f:
      return upgrade(json.load(f))
  except (OSError, ValueError):
    return None


def changes(config, workdir: str) -> dict[str, tuple]:
  """{field: (recorded, now)} between WORKDIR/config.json and `config`.

  Fields one side lacks (a field added to gen_jax since) are left out.

  Raises:
    UserError: a field that cannot change under a resume differs; config.json is
      left as it is.
  """
  recorded = read(workdir)
  if recorded is None:
    return {}
  old, new = _flatten(recorded), _flatten(as_json(config))
  diff = {k: (old[k], new[k]) for k in sorted(set(old) & set(new)) if old[k] != new[k]}
  fixed = {k: v for k, v in diff.items() if not _mutable(k)}
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
