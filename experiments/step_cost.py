"""What one training step of a config costs, and what its full run would: compiled FLOPs
(XLA's cost analysis) and measured time of the exact step the trainer runs.

    python -m experiments.step_cost --config=configs/biggan_imagenet128.py \\
        [--batch=N] [--steps=5] [--warmup=2] [--out=FILE] [--config.a.b=value ...]

Builds the config's experiment, compiles `gen_jax.core.trainer.make_guarded_step` (the one
program per step of `launch.py`: every D and G update, EMA, the non-finite guard) for a
global batch of `--batch` (default: the config's `training.batch_size`) over all devices,
and reports as one JSON object:

- `flops_per_step`: XLA's cost analysis of that compiled program (all devices together);
  `flops_per_example` = flops_per_step / batch;
- `compile_s`, and `step_s`: the median wall time of `--steps` timed steps after
  `--warmup` untimed ones (each waited for), `examples_per_s`, achieved `tflop_s`;
- `full_run`: the config's own `training.num_steps` at its own `training.batch_size`
  (`flops` = flops_per_example x batch x steps, the step's cost being linear in the
  batch), and the hours that would take on these devices at the measured rate.

FLOPs are only complete on the CPU: on GPUs, XLA hands convolutions and most matrix
products to cuDNN / cuBLAS custom calls, which its cost analysis counts as 0, so there the
JSON says so (`flops_complete: false`); take FLOPs from a CPU run (a tiny `--batch`
suffices: they are per example) and times from the accelerator.

Data comes from the config's dataset; on a machine without it, override the dataset
(e.g. `--config.data.dataset=digits`: the same networks, up to the first and last layer's
channel count and the class embedding's rows).
"""

import json
import statistics
import time

from absl import flags
from ml_collections import config_flags

from experiments import cli


def define_flags():
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  lock_config=False)
  flags.DEFINE_integer('batch', 0, 'Global batch measured (0: training.batch_size).')
  flags.DEFINE_integer('steps', 5, 'Timed steps (their median is step_s).')
  flags.DEFINE_integer('warmup', 2, 'Untimed steps after compilation.')
  flags.DEFINE_string('out', None, 'Also write the JSON here.')
  flags.mark_flags_as_required(['config'])


def flops_of(compiled) -> float:
  """FLOPs of a compiled program from XLA's cost analysis (a dict, or a list of one)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0)) if cost else 0.0


def measure(config, batch: int, steps: int, warmup: int) -> dict:
  """Compile and time the trainer's step of `config` at global batch `batch`."""
  import jax
  import numpy as np
  import experiments
  from gen_jax.core import parallel
  from gen_jax.core import trainer
  from gen_jax.platform.errors import UserError

  if steps < 1 or warmup < 0:
    raise UserError(f'--steps={steps} must be >= 1 and --warmup={warmup} >= 0.')
  full_batch, full_steps = config.training.batch_size, config.training.num_steps
  config.training.batch_size = batch
  mesh = parallel.make_mesh()
  parallel.check_divisible(batch, '--batch', mesh)
  experiment = experiments.build(config, mesh)
  state = jax.jit(experiment.init_state, out_shardings=experiment.state_sharding())(
      jax.random.PRNGKey(config.seed))
  source = experiment.train_batches()
  step_fn = trainer.make_guarded_step(experiment)

  start = time.perf_counter()
  compiled = step_fn.lower(state, *trainer.step_inputs(source, 0, mesh)).compile()
  compile_s = time.perf_counter() - start
  flops = flops_of(compiled)
  times = []
  for step in range(warmup + steps):
    args = trainer.step_inputs(source, step, mesh)
    start = time.perf_counter()
    state, metrics = compiled(state, *args)
    jax.block_until_ready((state, metrics))
    if step >= warmup:
      times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  per_example = flops / batch
  full_flops = per_example * full_batch * full_steps
  # At the measured examples/s on these devices (the step's time taken as linear in the
  # batch, which holds once a device is busy; small measured batches over-estimate).
  full_hours = full_steps * full_batch / (batch / step_s) / 3600
  device = jax.devices()[0]
  return {
      'config_family': config.family,
      'platform': device.platform, 'device_kind': device.device_kind,
      'devices': jax.device_count(), 'batch': batch,
      'compile_s': round(compile_s, 2),
      'flops_per_step': flops, 'flops_per_example': per_example,
      'flops_complete': device.platform == 'cpu',
      'step_s': step_s, 'step_s_all': [round(t, 5) for t in times],
      'examples_per_s': batch / step_s, 'tflop_s': flops / step_s / 1e12,
      'full_run': {'batch': full_batch, 'steps': full_steps, 'flops': full_flops,
                   'hours_on_these_devices': full_hours},
      'metrics_last_step': {k: float(np.asarray(v).mean()) for k, v in metrics.items()
                            if not k.startswith('_')},
  }


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  args = cli.flag_values('batch', 'steps', 'warmup', 'out')
  config = cli.loaded_config(flags.FLAGS['config'])
  result = measure(config, args.batch or config.training.batch_size, args.steps,
                   args.warmup)  # UserError: cli.run
  text = json.dumps(result, indent=1)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text + '\n')


def run():
  """The console script gen-jax-step-cost."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
