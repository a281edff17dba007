"""Many small models in one compiled program: trials vmapped over a leading axis.

`sweep.vmap` maps config fields to lists of N values, e.g.
`{'seed': [0, 1, 2, 3], 'optim': {'lr': [1e-4, 3e-4, 1e-3, 3e-3]}}` (nested dicts name
dotted fields; on the command line `--config.sweep.vmap="{'optim': {'lr': [...]}}"`).
Trial k takes the k-th value of every list and trains exactly like a plain run with those
overrides (tests/test_vmap_trials.py), but the N trials are one train state with a leading
trial axis, stepped by one compiled program: `jax.vmap` of the family's per-device step.

How a trial's values reach its step, so that they are traced values and not constants
baked into the program:
  * `seed`: the trial's base key (`state.rng` = PRNGKey(seed)) and its own batch order.
  * every other field: `TrialState.hparams[field]`, a scalar that reaches the family's
    step as its `hparams` argument in place of the config's value (gen_jax.core.family;
    learning rates go through the same warmup/decay schedule, `optim.make_optimizer`).
A family lists the fields it reads that way in `VMAP_FIELDS`; any other field (one that
changes shapes, run length or the traced code) is refused with a pointer to the launcher
sweep (`launch.py --sweep=FILE`, gen_jax/platform/sweeps/).

Devices: a (data, trial) mesh over the same devices as the family's `data` mesh. The trial
axis takes `sweep.vmap_trial_devices` of them (default: as many as divide both the trial
count and each host's devices); the rest split each trial's batch as in a plain run.
Trials on different devices never communicate; a step's metrics are gathered to every
device (a few scalars per trial).

What lands in the workdir: one checkpoint holding all trials; metrics as
`train/<name>/trial_<k>` (and `train/loss`, `train/grad_norm`: means over the trials
that are still finite, and likewise the family's other watched metrics); samples per trial
as `samples/<prefix>_trial<k>_step...`.
"""

import dataclasses
import functools
import math
import numbers
from typing import Any

import flax.struct
import jax
from jax import lax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from gen_jax.core import family as family_lib
from gen_jax.core import parallel
from gen_jax.core.train_state import TrainState
from gen_jax.platform.errors import UserError

TRIAL_AXIS = 'trial'


@flax.struct.dataclass
class TrialState(TrainState):
  """A trial's TrainState plus its values of the fields that differ between trials.

  A subclass, so that plain runs' TrainStates and checkpoints stay as they were.
  """
  hparams: Any = flax.struct.field(default_factory=dict)  # {config field: () float32}


_PER_TRIAL = tuple(f.name for f in dataclasses.fields(TrialState) if f.name != 'step')
# The vmap axes of a state: every field has a leading trial axis but the step, which all
# trials share (so the train loop reads and checkpoints it like a plain run's).
STATE_AXES = TrialState(step=None, **{name: 0 for name in _PER_TRIAL})



def _value_check(field: str):
  """(check, what) a trial's value of `field` must pass (the families say which fields
  they take): the seed an int32, learning rates (optim.*lr) positive, EMA decays in [0, 1)."""
  if field == 'seed':
    return (lambda v: isinstance(v, numbers.Integral) and 0 <= v < 2 ** 31,
            'an integer in [0, 2^31)')
  if field.startswith('optim.') and field.endswith('lr'):
    return lambda v: v > 0, 'positive'
  if field.endswith('ema_decay'):
    return lambda v: 0 <= v < 1, 'in [0, 1)'
  return lambda v: True, ''


def _flatten(tree, prefix: str = '') -> dict:
  """{'optim': {'lr': [...]}} -> {'optim.lr': [...]} (dicts or ConfigDicts)."""
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


def requested(config) -> bool:
  """Whether `config` asks for vmapped trials (a non-empty `sweep.vmap`)."""
  return bool(config.sweep.vmap)


def trial_values(config) -> dict[str, tuple]:
  """`sweep.vmap` as {dotted field: N values}, checked for shape (not yet for family).

  Raises:
    UserError: not a config field, not a list of numbers, or lists of different lengths.
  """
  values = _flatten(config.sweep.vmap)
  lengths = set()
  for field, value in values.items():
    node = config
    for part in field.split('.'):
      if not hasattr(node, 'keys') or part not in node:
        raise UserError(f'sweep.vmap names {field!r}, which is not a field of this config.')
      node = node[part]
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
      raise UserError(f'sweep.vmap.{field} must be a non-empty list of values (one per '
                      f'trial), not {value!r}.')
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in value):
      raise UserError(f'sweep.vmap.{field} must hold numbers only, not {list(value)!r}; '
                      f'other fields need a launcher sweep (launch.py --sweep=FILE).')
    lengths.add(len(value))
  if len(lengths) > 1:
    raise UserError(f'sweep.vmap lists must all have the same length (one value per '
                    f'trial), not {", ".join(f"{f}: {len(v)}" for f, v in values.items())}.')
  return {field: tuple(value) for field, value in values.items()}


def trial_devices(num_trials: int, requested_devices: int, mesh) -> int:
  """How many devices the trial axis is split over (the rest split the batch).

  By default as many as divide both the trial count and each host's devices: trials on
  different devices need no communication, while splitting a small model's batch costs
  an all-reduce of its gradients every step.
  """
  devices, local = mesh.devices.size, jax.local_device_count()
  if requested_devices <= 0:
    return math.gcd(num_trials, local)
  if num_trials % requested_devices or local % requested_devices:
    raise UserError(f'sweep.vmap_trial_devices={requested_devices} must divide the '
                    f'{num_trials} trials and the {local} devices of each host '
                    f'({devices} in all); 0 chooses.')
  return requested_devices


class VmappedTrials(family_lib.Experiment):
  """The Experiment (see gen_jax.core.family) of N trials of `family` in one program.

  Args:
    family: the family's experiment, built on the usual one-axis `data` mesh (it samples
      and evaluates one trial at a time there).
    mode: the launch mode ('train' or 'sample').
  Raises:
    UserError: a field the family cannot vary per trial, a bad value, or a mode or
      setting that scores one run at a time.
  """

  def __init__(self, family, mode: str = 'train'):
    config = family.config
    name = config.family
    if mode not in ('train', 'sample'):
      raise UserError(f'--mode={mode} scores one run, and this workdir holds the '
                      f'sweep.vmap trials of one program; --mode=train and --mode=sample '
                      f'take them (samples per trial).')
    if config.training.eval_every and config.eval.num_samples_train:
      raise UserError('eval.num_samples_train scores one run while training; with '
                      'sweep.vmap set it to 0 (or run a launcher sweep, --sweep=FILE).')
    self.values = trial_values(config)
    allowed = family.VMAP_FIELDS
    for field, values in self.values.items():
      if field not in allowed:
        raise UserError(
            f'sweep.vmap cannot vary {field}: the trials of one compiled program share '
            f'shapes, run length and code, and family {name!r} takes only '
            f'{", ".join(allowed) or "no fields"} per trial; sweep {field} with the '
            f'launcher instead: launch.py --sweep=FILE (docs/sweeps.md).')
      check, what = _value_check(field)
      bad = [v for v in values if not check(v)]
      if bad:
        raise UserError(f'sweep.vmap.{field} values must be {what}, not {bad[0]!r}.')
    self.family = family
    self.config = config
    self.num_trials = len(next(iter(self.values.values())))
    self.seeds = self.values.get('seed', (config.seed,) * self.num_trials)
    t = trial_devices(self.num_trials, config.sweep.vmap_trial_devices, family.mesh)
    # Devices in the family mesh's order: data position j holds devices j*t..j*t+t-1,
    # so each host feeds the same rows of the batch as in a plain run.
    self.mesh = jax.sharding.Mesh(
        family.mesh.devices.reshape(-1, t), (parallel.DATA_AXIS, TRIAL_AXIS))
    self.evaluate = self.per_trial(family.evaluate)
    self.WATCHED_METRICS = family.WATCHED_METRICS  # pylint: disable=invalid-name
    self.SHOWN_METRICS = family.SHOWN_METRICS  # pylint: disable=invalid-name
    self.makes_images, self.image_shape = family.makes_images, family.image_shape
    if jax.process_index() == 0:
      fields = ', '.join(self.values)
      print(f'vmapped trials: {self.num_trials} trials of {fields} in one program, on '
            f'{t} trial x {self.mesh.shape[parallel.DATA_AXIS]} data device(s); metrics '
            f'train/<name>/trial_<k>', flush=True)
    self._diverged: set[int] = set()

  # --- state ---------------------------------------------------------------------------
  def _specs(self) -> TrialState:
    """PartitionSpecs of the state (a prefix of it): trial axis split, step replicated."""
    return jax.tree.map(lambda axis: P() if axis is None else P(TRIAL_AXIS), STATE_AXES,
                        is_leaf=lambda x: x is None)

  def state_sharding(self) -> TrialState:
    """Shardings of the state, a prefix of it (used by the train loop and checkpoints)."""
    return jax.tree.map(lambda spec: NamedSharding(self.mesh, spec), self._specs(),
                        is_leaf=lambda x: isinstance(x, P))

  def init_state(self, rng) -> TrialState:
    """The family's fresh state of every trial, stacked: each from its own seed, with
    its own values of the other fields in `hparams`."""
    del rng  # each trial's base key is PRNGKey(its seed)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(self.seeds, jnp.int32))  # (N, 2)
    hparams = {field: jnp.asarray(values, jnp.float32)
               for field, values in self.values.items() if field != 'seed'}  # each (N,)

    def one(key, trial_hparams):
      state = self.family.init_state(key)
      return TrialState(hparams=trial_hparams, **{f.name: getattr(state, f.name)
                                                  for f in dataclasses.fields(TrainState)})

    return jax.vmap(one, out_axes=STATE_AXES)(keys, hparams)

  @functools.cached_property
  def _take(self):
    """jit((state, k) -> trial k's state), replicated on the family's mesh."""

    def take(state, k):
      trial = {name: jax.tree.map(lambda x: lax.dynamic_index_in_dim(x, k, keepdims=False),
                                  getattr(state, name)) for name in _PER_TRIAL}
      return state.replace(**trial)

    return jax.jit(take, out_shardings=parallel.replicated(self.family.mesh))

  def trial_state(self, state: TrialState, k: int) -> TrialState:
    """Trial k's state, as the family's state of a plain run (plus its `hparams`)."""
    return self._take(state, k)

  # --- training ------------------------------------------------------------------------
  def train_batches(self):
    """The family's batches, shared, unless each trial has its own seed (and so its own
    batch order): then the trials' batches stacked on axis 1, (B_local, N, ...)."""
    source = self.family.train_batches()
    if 'seed' not in self.values:
      return source
    return _StackedBatches([source.with_seed(int(seed)) for seed in self.seeds])

  def train_step(self, state: TrialState, batch, rng, hparams):
    """One trial's per-device step (the train loop's `per_device` vmaps it, see map_step)."""
    return self.family.train_step(state, batch, rng, hparams)

  def step_hparams(self, state: TrialState) -> dict:
    """The family's `hparams`, with this trial's own (traced) values where it has them."""
    return {**self.family.hparams(), **state.hparams}

  def map_step(self, per_device):
    """jit(shard_map(vmap(per_device))) over the (data, trial) mesh, state donated.

    Args:
      per_device: the train loop's step of one trial on one device (its rng from the
        trial's own base key and the shared step; see `trainer.make_train_step`).
    Returns:
      The compiled step: (state, global batch) -> (state, {metric: (N,) per trial}).
    """
    own_batches = 'seed' in self.values
    n_local = self.num_trials // self.mesh.shape[TRIAL_AXIS]

    def per_device_trials(state, batch):
      start = lax.axis_index(TRIAL_AXIS) * n_local  # this device's first trial
      if own_batches:  # (B_local, N, ...) -> this device's trials (B_local, n_local, ...)
        batch = jax.tree.map(lambda x: lax.dynamic_slice_in_dim(x, start, n_local, axis=1),
                             batch)
      state, metrics = jax.vmap(per_device, in_axes=(STATE_AXES, 1 if own_batches else None),
                                out_axes=(STATE_AXES, 0))(state, batch)
      # Each device holds n_local trials' metrics: placed in (N,) and summed over the
      # trial axis, every device has all of them (exact: the other entries are 0).
      metrics = jax.tree.map(lambda m: lax.psum(lax.dynamic_update_slice_in_dim(
          jnp.zeros((self.num_trials,), m.dtype), m, start, 0), TRIAL_AXIS), metrics)
      return state, metrics

    specs = self._specs()
    return parallel.map_per_device(per_device_trials, self.mesh,
                                   in_specs=(specs, parallel.SHARDED),
                                   out_specs=(specs, parallel.REPLICATED),
                                   donate_argnums=(0,))

  def finalize_metrics(self, metrics: dict) -> dict:
    """{name: (N,)} -> {watched metric (mean over finite trials), '<name>/trial_<k>'}.

    A trial with a non-finite watched metric (the family's WATCHED_METRICS, e.g. loss and
    grad_norm) is reported once and left out of the means; the others train on (the run
    stops, keeping its last good checkpoint, only when all have).
    """
    per_trial = {}
    for k in range(self.num_trials):
      trial = self.family.finalize_metrics({name: np.asarray(value)[k]
                                            for name, value in metrics.items()})
      per_trial.update({f'{name}/trial_{k}': value for name, value in trial.items()})
    watched = {name: np.asarray(metrics[name], np.float64)
               for name in self.WATCHED_METRICS if name in metrics}
    finite = np.logical_and.reduce([np.isfinite(v) for v in watched.values()])
    for k in sorted(set(np.flatnonzero(~finite).tolist()) - self._diverged):
      self._diverged.add(k)
      if jax.process_index() == 0:
        overrides = ', '.join(f'{f}={v[k]}' for f, v in self.values.items())
        print(f'warning: trial {k} ({overrides}) has a non-finite loss; the other trials '
              f'go on.', flush=True)
    means = {name: float(value[finite].mean()) if finite.any() else float('nan')
             for name, value in watched.items()}
    return {**means, **per_trial}

  # --- samples and evaluation ----------------------------------------------------------
  def per_trial(self, fn):
    """fn(state, step) -> {'eval/x': v} of one run, as {'eval/x/trial_<k>': v} of all."""

    def each(state, step):
      scalars = {}
      for k in range(self.num_trials):
        scalars.update({f'{name}/trial_{k}': value
                        for name, value in fn(self.trial_state(state, k), step).items()})
      return scalars

    return each

  def write_samples(self, state: TrialState, step: int, workdir: str, prefix: str) -> list:
    """The family's samples of every trial, named `<prefix>_trial<k>_...`."""
    written = []
    for k in range(self.num_trials):
      written += self.family.write_samples(self.trial_state(state, k), step, workdir,
                                           prefix=f'{prefix}_trial{k}')
    return written


class _StackedBatches:
  """Several trials' batch sources as one: batch(step) stacks them on axis 1, so the
  leading (batch) axis is still the one split over the data axis and over hosts."""

  def __init__(self, sources: list):
    self.sources = sources

  def batch(self, step: int) -> dict[str, np.ndarray]:
    batches = [source.batch(step) for source in self.sources]
    return {key: np.stack([b[key] for b in batches], axis=1) for key in batches[0]}
