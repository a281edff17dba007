"""The one train loop: steps, EMA, logging, checkpoints, samples, preemption.

Every family plugs in through the `Experiment` protocol below; the loop itself knows
nothing about diffusion, VAEs or GANs.
"""

import math
import os
import signal
import sys
import time
from typing import Any, Protocol

import jax
import numpy as np

from gen_jax import checkpoint
from gen_jax import metric_log
from gen_jax import parallel
from gen_jax.errors import UserError
from gen_jax.train_state import TrainState


class Experiment(Protocol):
  """What a family provides to the train loop (see experiments/)."""
  config: Any
  mesh: jax.sharding.Mesh

  def init_state(self, rng: jax.Array) -> TrainState:
    """A fresh state from the base key (called under jit, identically on every host)."""

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array):
    """Per-device update: batch is this device's shard, rng the step's key (the same on
    every device; see `make_train_step`). Returns (state, metrics) with metrics already `lax.pmean`ed over `data`."""

  def train_batches(self):
    """A `gen_jax.data.BatchSource` (anything with `.batch(step)` -> host-local dict)."""

  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> None:
    """Generates samples (all processes take part) and writes them (process 0)."""

  # Optional:
  #   finalize_metrics(metrics: dict) -> dict: host-side post-processing of a step's
  #     metrics before logging (default: unchanged).
  #   evaluate(state, step) -> dict: 'eval/...' scalars, every `training.eval_every`
  #     steps (all processes take part; process 0 logs).
  #   state_sharding() -> the state's shardings (a pytree prefix of it; default:
  #     replicated on `mesh`), and map_step(per_device) -> the compiled step (default:
  #     `parallel.map_per_device` over `mesh`): vmapped trials (gen_jax.vmap_trials)
  #     split a trial axis over devices.


class _Preemption:
  """Turns SIGTERM (how clouds and schedulers announce preemption) into a flag."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread (e.g. inside some test runners).
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def agreed(self) -> bool:
    """Whether any process was asked to stop (collective when there are several)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))


def abstract_state(experiment: Experiment, rng: jax.Array):
  """Shapes, dtypes and shardings of the state, without computing it."""
  shapes = jax.eval_shape(experiment.init_state, rng)
  place = lambda sharding, tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
  return jax.tree.map(place, state_sharding(experiment), shapes,
                      is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))


def state_sharding(experiment: Experiment):
  """Where the state lives: replicated on every device, unless the experiment says."""
  placed = getattr(experiment, 'state_sharding', None)
  return placed() if placed else parallel.replicated(experiment.mesh)


def restore_or_init(experiment: Experiment, ckpt: checkpoint.Checkpointer) -> TrainState:
  """The latest checkpoint if there is one, else a fresh state, placed on the devices."""
  rng = jax.random.PRNGKey(experiment.config.seed)
  if ckpt.latest_step() is not None:
    return ckpt.restore(abstract_state(experiment, rng))
  init = jax.jit(experiment.init_state, out_shardings=state_sharding(experiment))
  return init(rng)


def restore_latest(experiment: Experiment, workdir: str) -> TrainState:
  """The latest checkpoint of `workdir` (for sample / eval modes)."""
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  try:
    return ckpt.restore(abstract_state(experiment, jax.random.PRNGKey(experiment.config.seed)))
  finally:
    ckpt.close()


def make_train_step(experiment: Experiment):
  """jit(shard_map(per-device step)) with the state donated.

  The step's key is fold_in(base, step), the same on every device: nothing random is
  threaded through the host loop, and a resumed run draws exactly the same keys.
  Steps fold in each example's global batch position (batch['index']) for per-example
  draws, and the device index (`parallel.device_rng`) where a draw is per device.
  """

  def per_device(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    new_state, metrics = experiment.train_step(state, batch, rng)
    return new_state.replace(step=state.step + 1), metrics

  if hasattr(experiment, 'map_step'):
    return experiment.map_step(per_device)
  return parallel.map_per_device(
      per_device, experiment.mesh, in_specs=(parallel.REPLICATED, parallel.SHARDED),
      out_specs=(parallel.REPLICATED, parallel.REPLICATED), donate_argnums=(0,))


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def write_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def train(experiment: Experiment, workdir: str, evaluate=None) -> str:
  """Trains to `training.num_steps`, resuming from the latest checkpoint in `workdir`.

  `evaluate(state, step) -> {'eval/...': value}` runs every `training.eval_every` steps
  (default: the experiment's own `evaluate`, if it has one).

  Returns:
    'done', or 'preempted' when SIGTERM arrived (a checkpoint of the current step was
    saved first).
  Raises:
    UserError: bad input, or a non-finite loss (the last good checkpoint is kept).
  """
  config = experiment.config
  tcfg = config.training
  is_chief = jax.process_index() == 0
  write_config(config, workdir)
  ckpt = checkpoint.Checkpointer(workdir, tcfg.keep_checkpoints, tcfg.async_checkpoints)
  logger = metric_log.MetricLogger(workdir, enabled=is_chief)
  try:
    state = restore_or_init(experiment, ckpt)
    start = int(jax.device_get(state.step))
    logger.truncate_after(start)
    if start >= tcfg.num_steps:
      _say(is_chief, f'already trained to step {start} of {tcfg.num_steps}; nothing to do.')
      return 'done'
    source = experiment.train_batches()
    step_fn = make_train_step(experiment)
    finalize = getattr(experiment, 'finalize_metrics', lambda m: m)
    evaluate = evaluate or getattr(experiment, 'evaluate', None)
    eval_every = tcfg.get('eval_every', 0) if evaluate else 0
    _say(is_chief, f'{"resuming at" if start else "starting at"} step {start} of '
         f'{tcfg.num_steps}: {jax.device_count()} device(s) on {jax.process_count()} '
         f'process(es), global batch {tcfg.batch_size}; workdir {workdir}')
    last_saved = ckpt.latest_step()
    window = {'time': time.time(), 'step': start}
    pending = None  # (step, metrics) of the last step, fetched one step late

    def settle(pending):
      """Fetches a step's metrics, stops on non-finite loss, logs on schedule."""
      step, metrics = pending
      metrics = finalize(jax.device_get(metrics))
      bad = [k for k in ('loss', 'grad_norm') if k in metrics
             and not np.isfinite(metrics[k])]
      if bad:
        raise UserError(
            f'non-finite {bad[0]} at step {step}: training stopped; the last good '
            f'checkpoint (step {ckpt.latest_step()}) is kept. Lower optim.lr or '
            f'set optim.grad_clip.')
      if step % tcfg.log_every == 0 or step == tcfg.num_steps or step == start + 1:
        now = time.time()
        rate = (step - window['step']) / max(now - window['time'], 1e-9)
        window.update(time=now, step=step)
        eta = (tcfg.num_steps - step) / rate if rate > 0 else float('inf')
        scalars = {f'train/{k}': v for k, v in metrics.items()}
        scalars['train/steps_per_s'] = rate
        logger.write(step, scalars)
        shown = ' | '.join(f'{k} {v:.4g}' for k, v in metrics.items()
                           if k in ('loss', 'grad_norm', 'd_loss', 'g_loss', 'elbo'))
        _say(is_chief, f'step {step}/{tcfg.num_steps} | {shown} | {rate:.2f} steps/s | '
             f'ETA {format_duration(eta)}')

    with _Preemption() as preemption:
      for step in range(start, tcfg.num_steps):
        check_now = (jax.process_count() == 1 or step % tcfg.log_every == 0)
        if check_now and preemption.agreed():
          if pending:
            settle(pending)
          if last_saved != step:
            ckpt.save(step, state)
          ckpt.wait()
          _say(is_chief, f'SIGTERM: saved checkpoint {step} in {ckpt.directory}; exiting.')
          return 'preempted'
        batch = parallel.host_local_to_global(source.batch(step), experiment.mesh)
        state, metrics = step_fn(state, batch)
        if pending:
          settle(pending)
        pending = (step + 1, metrics)
        done = step + 1
        if done % tcfg.checkpoint_every == 0 or done == tcfg.num_steps:
          settle(pending)  # never checkpoint a state whose step was non-finite
          pending = None
          ckpt.save(done, state)
          last_saved = done
        if tcfg.sample_every and (done % tcfg.sample_every == 0 or done == tcfg.num_steps):
          experiment.write_samples(state, done, workdir, prefix='train')
        if eval_every and (done % eval_every == 0 or done == tcfg.num_steps):
          scalars = evaluate(state, done)
          logger.write(done, scalars)
          _say(is_chief, f'eval at step {done}: ' +
               ', '.join(f'{k} {v:.4g}' for k, v in scalars.items()))
      if pending:
        settle(pending)
    ckpt.wait()
    _say(is_chief, f'done: {tcfg.num_steps} steps; checkpoints in {ckpt.directory}')
    return 'done'
  finally:
    logger.close()
    ckpt.close()


def _say(is_chief: bool, message: str) -> None:
  if is_chief:
    print(message, flush=True)
    sys.stdout.flush()
