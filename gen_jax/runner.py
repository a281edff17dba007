"""What `launch.py` runs: device/process setup, then the family's train or sample mode."""

import math
import os

from gen_jax import parallel
from gen_jax.errors import UserError


def setup_devices(config, coordinator_address: str = '', num_processes: int = 0,
                  process_id: int = -1) -> None:
  """Before JAX starts: one CPU device per core (dividing the batches), then processes."""
  divisor = math.gcd(config.training.batch_size, config.sampling.num_samples)
  parallel.configure_cpu_devices(
      parallel.choose_cpu_device_count(divisor, config.parallel.cpu_devices))
  parallel.initialize_distributed(coordinator_address, num_processes, process_id)


def validate_training(config) -> None:
  """One-line errors for the shared `training` and `sampling` blocks."""
  t = config.training
  for name, value, minimum in [('training.batch_size', t.batch_size, 1),
                               ('training.num_steps', t.num_steps, 0),
                               ('training.log_every', t.log_every, 1),
                               ('training.checkpoint_every', t.checkpoint_every, 1),
                               ('training.keep_checkpoints', t.keep_checkpoints, 1),
                               ('training.sample_every', t.sample_every, 0),
                               ('training.eval_every', t.eval_every, 0),
                               ('sampling.num_samples', config.sampling.num_samples, 1)]:
    if value < minimum:
      raise UserError(f'{name} must be >= {minimum}, not {value}.')


def run(config, workdir: str, mode: str = 'train', **distributed) -> str:
  """Runs `mode` ('train' or 'sample') of `config` in `workdir`.

  Returns:
    What happened ('done', 'preempted', or the sample files written).
  """
  if not workdir:
    raise UserError('--workdir is empty; give a directory for the run.')
  validate_training(config)
  setup_devices(config, **distributed)
  import experiments  # pylint: disable=g-import-not-at-top
  from gen_jax import trainer  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  mesh = parallel.make_mesh()
  # Every family splits the global batch over all devices: checked once, before any compile.
  parallel.check_divisible(config.training.batch_size, 'training.batch_size', mesh)
  experiment = experiments.build(config, mesh)
  if mode == 'train':
    return trainer.train(experiment, workdir)
  if mode == 'sample':
    state = trainer.restore_latest(experiment, workdir)
    step = int(state.step)
    return experiment.write_samples(state, step, workdir, prefix='sample')
  raise UserError(f'unknown mode {mode!r}.')
