"""The one train loop: steps, EMA, logging, checkpoints, samples, preemption.

Every family plugs in through `gen_jax.core.family.Experiment`; the loop itself knows nothing
about diffusion, VAEs or GANs.
"""

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.core import parallel
from gen_jax.core.family import Experiment
from gen_jax.core.train_state import TrainState
from gen_jax.platform import checkpoint
from gen_jax.platform import metric_log
from gen_jax.platform import preemption
from gen_jax.platform import run_config
from gen_jax.platform import workdir_lock
from gen_jax.platform.errors import UserError


def abstract_state(experiment: Experiment, rng: jax.Array):
  """Shapes, dtypes and shardings of the state, without computing it."""
  shapes = jax.eval_shape(experiment.init_state, rng)
  place = lambda sharding, tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
  return jax.tree.map(place, experiment.state_sharding(), shapes,
                      is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))


def agree_all(ok: bool) -> bool:
  """Whether `ok` holds on every process (a collective when there are several)."""
  if jax.process_count() == 1:
    return bool(ok)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.all(multihost_utils.process_allgather(np.array(bool(ok)))))


def restore_or_init(experiment: Experiment, ckpt: checkpoint.Checkpointer) -> TrainState:
  """The newest intact checkpoint if there is one (damaged newer ones set aside), else a
  fresh state, placed on the devices."""
  rng = jax.random.PRNGKey(experiment.config.seed)
  if ckpt.latest_step() is not None:
    return ckpt.restore_newest_intact(
        abstract_state(experiment, rng), set_aside=True, agree=agree_all,
        say=lambda m: _say(jax.process_index() == 0, m, sys.stderr))
  init = jax.jit(experiment.init_state, out_shardings=experiment.state_sharding())
  return init(rng)


def restore_latest(experiment: Experiment, workdir: str) -> TrainState:
  """The newest intact checkpoint of `workdir` (for sample / eval modes; damaged newer
  ones are skipped with a note, and left where they are for the training run)."""
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  try:
    return ckpt.restore_newest_intact(
        abstract_state(experiment, jax.random.PRNGKey(experiment.config.seed)),
        agree=agree_all, say=lambda m: _say(jax.process_index() == 0, m, sys.stderr))
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
    new_state, metrics = experiment.train_step(state, batch, rng,
                                               experiment.step_hparams(state))
    return new_state.replace(step=state.step + 1), metrics

  return experiment.map_step(per_device)


def make_guarded_step(experiment: Experiment):
  """The train step, plus two things the loop needs from every step at no extra sync.

  * A step with a non-finite watched metric (the experiment's WATCHED_METRICS: its
    losses and gradient norm) is not applied, nor is any step
    after it (a step applies only when the state's step is the host's `step`), so after
    a NaN the state is still the last finite one, and the loop saves it.
  * Every process's stop request (SIGTERM / Ctrl-C) enters the step as `stop`, one
    entry per example of its batch slice, and comes back reduced over all processes
    as metrics['_stop']: all processes see a request at the same step.

  Returns:
    jit((state, global batch, step, global stop flags) -> (state, metrics)), the state
    donated.
  """
  mapped = make_train_step(experiment)

  def guarded(state, batch, step, stop):
    new_state, metrics = mapped(state, batch)
    finite = jnp.ones((), bool)
    for key in experiment.WATCHED_METRICS:
      if key in metrics:
        finite = finite & jnp.isfinite(metrics[key])
    # Vmapped trials (metrics (N,)) go on while any trial is finite, as finalize_metrics does.
    ok = jnp.any(finite) & jnp.all(state.step == step)
    new_state = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new_state, state)
    return new_state, {**metrics, '_stop': jnp.max(stop)}

  return jax.jit(guarded, donate_argnums=(0,))


def step_inputs(source, step: int, mesh, stop_requested=False) -> tuple:
  """The guarded step's arguments after the state, for `step`: this process's batch as a
  global array, the step, and its stop flags (one per example of its batch slice) as one.

  Args:
    source: the experiment's `train_batches()`.
    step: the step about to run.
    mesh: the experiment's device mesh.
    stop_requested: whether this process asks to stop (truthy: a reason).
  """
  batch = source.batch(step)
  rows = len(jax.tree.leaves(batch)[0])
  stop = np.full((rows,), bool(stop_requested), np.int32)
  return (parallel.host_local_to_global(batch, mesh), np.int32(step),
          parallel.host_local_to_global(stop, mesh))


def nan_advice(config) -> str:
  """What to change after a non-finite loss, for this config's optimizer settings."""
  o = config.optim
  rates = [name for name in o if name.endswith('lr')]  # optim.lr, or each player's
  tips = [f'lower {" / ".join(f"optim.{n}" for n in rates)} '
          f'(now {" / ".join(f"{o[n]:g}" for n in rates)})']
  tips.append(f'a longer optim.warmup_steps (now {o.warmup_steps})')
  tips.append(f'a smaller optim.grad_clip (now {o.grad_clip:g})' if o.grad_clip > 0 else
              'optim.grad_clip=1 (clipping is off)')
  return (f'Rerun with {", ".join(tips[:-1])} or {tips[-1]}: these may change when '
          f'resuming.')


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def lock_workdir(workdir: str):
  """Process 0 locks WORKDIR (see gen_jax.platform.workdir_lock); every process learns whether
  it could. Returns the lock (None on other processes)."""
  lock, problem = None, None
  if jax.process_index() == 0:
    try:
      lock = workdir_lock.WorkdirLock(workdir)
    except UserError as e:
      problem = e
  if not agree_all(problem is None):
    if problem is not None:
      raise problem
    raise UserError(f'process 0 could not lock the workdir {workdir} (see its message: '
                    f'another run uses it).')
  if lock is not None and lock.took_over:
    _say(True, f'note: took over the lock of process {lock.took_over.get("pid")} on '
         f'{lock.took_over.get("host")}, which has ended.', sys.stderr)
  return lock


def train(experiment: Experiment, workdir: str, evaluate=None) -> str:
  """Trains to `training.num_steps`, resuming from the newest intact checkpoint in `workdir`.

  `evaluate(state, step) -> {'eval/...': value}` runs every `training.eval_every` steps
  (default: the experiment's own `evaluate`).

  Returns:
    'done', or 'preempted' when SIGTERM or Ctrl-C arrived (a checkpoint of the current
    step was saved first; see gen_jax.platform.preemption).
  Raises:
    UserError: bad input, another process on the workdir, a config that cannot resume
      this run, a failed checkpoint save, or a non-finite loss (the last finite state is
      saved first).
  """
  config = experiment.config
  tcfg = config.training
  is_chief = jax.process_index() == 0
  with preemption.Signals() as signals:
    lock = lock_workdir(workdir)
    ckpt = logger = None
    try:
      ckpt = checkpoint.Checkpointer(workdir, tcfg.keep_checkpoints, tcfg.async_checkpoints)
      # Before anything is restored or written: may this config resume this run?
      changed = (run_config.changes(config, workdir, experiment.RESUMABLE_FIELDS,
                                    experiment.RENAMED)
                 if ckpt.latest_step() is not None else {})
      state = restore_or_init(experiment, ckpt)
      start = int(jax.device_get(state.step))
      if is_chief:  # accepted: the checkpoint fits, the config may resume it
        run_config.write(config, workdir, start, changed)
      if changed:
        _say(is_chief, 'resuming with changed settings (recorded in '
             f'{run_config.HISTORY_NAME}): ' + ', '.join(
                 f'{k} {v[0]!r} -> {v[1]!r}' for k, v in changed.items()))
      logger = metric_log.MetricLogger(workdir, enabled=is_chief)
      logger.truncate_after(start)
      if start >= tcfg.num_steps:
        _say(is_chief, f'already trained to step {start} of {tcfg.num_steps}; nothing to do.')
        return 'done'
      return _Loop(experiment, workdir, evaluate, ckpt, logger, signals).run(state, start)
    finally:
      if logger is not None:
        logger.close()
      if ckpt is not None:
        ckpt.close()
      if lock is not None:
        lock.release()


class _Loop:
  """The step loop of `train`: steps, metrics one step late, checkpoints, samples,
  evaluations, NaN and stop requests."""

  def __init__(self, experiment, workdir, evaluate, ckpt, logger, signals):
    self.experiment, self.workdir, self.ckpt, self.logger = experiment, workdir, ckpt, logger
    self.signals = signals
    self.config = experiment.config
    self.tcfg = self.config.training
    self.is_chief = jax.process_index() == 0
    self.evaluate = evaluate or experiment.evaluate
    self.eval_every = self.tcfg.eval_every
    self.last_saved = ckpt.latest_step()
    self.state = None
    self.pending = None  # (step, metrics) of the last step, fetched one step late

  def run(self, state, start: int) -> str:
    tcfg, experiment = self.tcfg, self.experiment
    self.state, self.start = state, start
    self.window = {'time': time.time(), 'step': start}
    _say(self.is_chief, f'{"resuming at" if start else "starting at"} step {start} of '
         f'{tcfg.num_steps}: {jax.device_count()} device(s) on {jax.process_count()} '
         f'process(es), global batch {tcfg.batch_size}; workdir {self.workdir}')
    source = experiment.train_batches()
    step_fn = make_guarded_step(experiment)
    single = jax.process_count() == 1
    for step in range(start, tcfg.num_steps):
      if single and self.signals.requested:  # noticed at once, also before the first step
        return self.stop(self.signals.requested)
      self.ckpt.check_errors()  # a failed background save stops the run here
      self.state, metrics = step_fn(
          self.state, *step_inputs(source, step, experiment.mesh, self.signals.requested))
      if self.pending and self.settle():
        return self.stop(self.signals.requested or 'a stop request on another process')
      self.pending = (step + 1, metrics)
      done = step + 1
      try:
        if done % tcfg.checkpoint_every == 0 or done == tcfg.num_steps:
          self.settle()  # never checkpoint a state whose step was non-finite
          self.save(done)
        if tcfg.sample_every and (done % tcfg.sample_every == 0 or done == tcfg.num_steps):
          experiment.write_samples(self.state, done, self.workdir, prefix='train')
        if self.eval_every and (done % self.eval_every == 0 or done == tcfg.num_steps):
          scalars = self.evaluate(self.state, done)
          if scalars:  # a family without metrics of its own (and no sample metrics)
            self.logger.write(done, scalars)
            _say(self.is_chief, f'eval at step {done}: ' +
                 ', '.join(f'{k} {v:.4g}' for k, v in scalars.items()))
      except preemption.Interrupted as e:  # a single-process run, mid-grid or mid-eval
        return self.stop(str(e))
    if self.pending:
      self.settle()
    self.ckpt.wait()
    _say(self.is_chief, f'done: {tcfg.num_steps} steps; checkpoints in {self.ckpt.directory}')
    return 'done'

  def save(self, step: int) -> None:
    if self.last_saved != step:
      self.ckpt.check_space(step)
      self.ckpt.save(step, self.state)
      self.last_saved = step

  def stop(self, why: str) -> str:
    """Saves the current state and ends the run ('preempted')."""
    if self.pending:
      self.settle()
    step = int(jax.device_get(self.state.step))
    self.save(step)
    self.ckpt.wait()
    _say(self.is_chief, f'{why}: saved checkpoint {step} in {self.ckpt.directory}; exiting '
         f'(rerun the same command to resume).')
    return 'preempted'

  def settle(self) -> bool:
    """Fetches the pending step's metrics, stops on a non-finite loss, logs on schedule.

    Returns:
      Whether some process asked to stop (agreed inside the step).
    Raises:
      UserError: a non-finite loss; the last finite state was saved first.
    """
    step, metrics = self.pending
    self.pending = None
    tcfg = self.tcfg
    metrics = jax.device_get(metrics)
    stop = bool(metrics.pop('_stop'))
    metrics = self.experiment.finalize_metrics(metrics)
    bad = [k for k in self.experiment.WATCHED_METRICS
           if k in metrics and not np.isfinite(metrics[k])]
    if bad:
      # The guarded step applied neither this step nor any after it: the state is the
      # last finite one. Save it, so the rerun with the advice resumes right there.
      kept = int(jax.device_get(self.state.step))
      self.save(kept)
      self.ckpt.wait()
      raise UserError(
          f'non-finite {bad[0]} at step {step}: training stopped; the last finite state '
          f'(step {kept}) is saved as checkpoint {kept}. {nan_advice(self.config)}')
    if step % tcfg.log_every == 0 or step == tcfg.num_steps or step == self.start + 1:
      now = time.time()
      rate = (step - self.window['step']) / max(now - self.window['time'], 1e-9)
      self.window.update(time=now, step=step)
      eta = (tcfg.num_steps - step) / rate if rate > 0 else float('inf')
      scalars = {f'train/{k}': v for k, v in metrics.items()}
      scalars['train/steps_per_s'] = rate
      self.logger.write(step, scalars)
      shown = ' | '.join(f'{k} {v:.4g}' for k, v in metrics.items()
                         if k in self.experiment.SHOWN_METRICS)
      _say(self.is_chief, f'step {step}/{tcfg.num_steps} | {shown} | {rate:.2f} steps/s | '
           f'ETA {format_duration(eta)}')
    return stop


def _say(is_chief: bool, message: str, stream=None) -> None:
  if is_chief:
    print(message, file=stream or sys.stdout, flush=True)
