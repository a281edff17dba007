"""Benchmark: gen_jax's U-Net train step and DDIM sampler on the diffusers peer's work.

    python -m experiments.benchmark [--quick] [--nets=small,cifar10] [--out=FILE]
        [--small_batch=N] [--cifar_batch=N] [--dtype=float32|bfloat16] [--no_tcmalloc]

Same networks (configs/bench_peer.py), batches (64 and 16), random weights and data,
fp32, and protocol as tools/diffusers_bench.py: warm-up steps, then the median
of timed train steps; DDIM (50 steps, 10 with --quick) on the whole batch; compile time
reported separately. Prints one JSON object (also written to --out).

On the CPU the batch is split over one device per core, and the process re-executes
itself with tcmalloc preloaded where the system has it (gen_jax's defaults, as
`launch.py` does); set XLA_FLAGS=--xla_force_host_platform_device_count=N to choose the
split, and --no_tcmalloc to keep the system's malloc.
"""

import json
import os
import platform
import statistics
import sys
import time

from absl import flags

from configs import bench_peer
from experiments import cli
from gen_jax.core import parallel
from gen_jax.platform import devices
from gen_jax.platform import host_memory


def define_flags():
  flags.DEFINE_bool('quick', False,
                    'Warm-up 1, 3 timed train steps, DDIM 10 steps (as the peer --quick).')
  flags.DEFINE_string('nets', 'small,cifar10', 'Comma list of: small, cifar10.')
  flags.DEFINE_integer('warmup', None, 'Warm-up train steps (2; quick 1).')
  flags.DEFINE_integer('train_steps', None, 'Timed steps (10; quick 3).')
  flags.DEFINE_integer('ddim_steps', None, 'DDIM steps (50; quick 10).')
  flags.DEFINE_integer('small_batch', None, "Small-net batch (64, the peer's).")
  flags.DEFINE_integer('cifar_batch', None,
                       "cifar10-net batch (16, the peer's; e.g. 128 on a GPU).")
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                    'U-Net computation dtype (model.dtype; bfloat16 = mixed precision).')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  flags.DEFINE_string('out', None, 'Also write the JSON here.')
  flags.DEFINE_bool('no_tcmalloc', False,
                    "Keep the system's malloc (the A/B of gen_jax/platform/host_memory.py).")


def args_from_flags():
  """The flags' values (the JSON's `args`), the step counts' defaults filled in."""
  a = cli.flag_values('quick', 'nets', 'warmup', 'train_steps', 'ddim_steps', 'small_batch',
                      'cifar_batch', 'dtype', 'seed', 'out', 'no_tcmalloc')
  a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
  a.train_steps = a.train_steps if a.train_steps is not None else (3 if a.quick else 10)
  a.ddim_steps = a.ddim_steps if a.ddim_steps is not None else (10 if a.quick else 50)
  return a


def foreign_cpu_cores(start: tuple[float, float, float]) -> float | None:
  """Cores used by other processes since `start` (from /proc), to flag noisy timings."""
  now = _cpu_times()
  if None in now or None in start:
    return None
  busy, own, wall = (n - s for n, s in zip(now, start))
  return round(max(0.0, busy - own) / max(wall, 1e-9), 3)


def _cpu_times():
  hz = os.sysconf('SC_CLK_TCK')
  try:
    with open('/proc/stat') as f:
      v = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(v) - v[3] - v[4]) / hz
    with open('/proc/self/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / hz
  except (OSError, ValueError, IndexError):
    return None, None, time.perf_counter()
  return busy, own, time.perf_counter()


def batch_size_of(name: str, a) -> int:
  """The batch of net `name`: the peer's, unless --small_batch / --cifar_batch say."""
  override = {'small': a.small_batch, 'cifar10': a.cifar_batch}.get(name)
  return override or bench_peer.get_config(name).training.batch_size


def model_gflop_per_image(model, params, image_shape) -> dict:
  """The U-Net's FLOPs for one image (XLA cost analysis): forward, and forward + gradient.

  Counted on an unsharded one-image program, so the figure is the model's, not a device's
  share; the train step's optimizer update and noise draws are left out (a few %).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  x, t = jnp.zeros((1, *image_shape)), jnp.zeros((1,), jnp.int32)
  key = jax.random.PRNGKey(0)

  def flops(fn):
    cost = jax.jit(fn).lower(params).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)['flops']) / 1e9

  forward = flops(lambda p: model.apply(p, x, t))
  train = flops(jax.grad(lambda p: jnp.sum(model.apply(p, x, t, train=True,
                                                       rngs={'dropout': key}))))
  return {'forward': forward, 'train_step': train}


def matmul_gflop_s(mesh, n: int = 2048) -> float:
  """All devices' fp32 matmul rate, measured: one (n, n) @ (n, n) per device at once."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  devices = mesh.size
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(parallel.DATA_AXIS))
  a = jax.device_put(jnp.ones((devices, n, n), jnp.float32), sharding)  # (D, n, n)
  matmul = jax.jit(lambda a: jnp.einsum('dij,djk->dik', a, a), out_shardings=sharding)
  jax.block_until_ready(matmul(a))
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    jax.block_until_ready(matmul(a))
    times.append(time.perf_counter() - t0)
  return devices * 2 * n**3 / statistics.median(times) / 1e9


def bench_net(name: str, a, peak_gflop_s: float) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments.diffusion.experiment import DiffusionExperiment  # pylint: disable=g-import-not-at-top
  from gen_jax.core import trainer  # pylint: disable=g-import-not-at-top

  config = bench_peer.get_config(name)
  config.seed = a.seed
  config.training.batch_size = config.sampling.num_samples = batch_size_of(name, a)
  config.model.dtype = a.dtype
  config.sampling.num_steps = a.ddim_steps
  batch_size = config.training.batch_size
  size = config.data.image_size
  mesh = parallel.make_mesh()
  experiment = DiffusionExperiment(config, mesh,
                                   image_shape=(size, size, config.bench_channels))
  state = jax.jit(experiment.init_state, out_shardings=parallel.replicated(mesh))(
      jax.random.PRNGKey(a.seed))
  params = sum(x.size for x in jax.tree.leaves(state.params))
  rng = np.random.default_rng(a.seed)
  host_batch = {'image': np.clip(rng.standard_normal((batch_size, size, size,
                                                      config.bench_channels)), -1, 1)
                         .astype(np.float32),
                'label': np.zeros((batch_size,), np.int32),
                'index': np.arange(batch_size, dtype=np.int32)}
  batch = parallel.host_local_to_global(host_batch, mesh)
  gflop = model_gflop_per_image(experiment.model, jax.tree.map(np.asarray, state.params),
                                (size, size, config.bench_channels))
  result = {'params': int(params), 'batch': batch_size, 'dtype': a.dtype,
            'config': f'configs/bench_peer.py:{name}',
            'gflop_per_image': gflop}

  # Train step: compile (timed alone), warm-up, then the median of timed steps.
  step_fn = trainer.make_train_step(experiment)
  t0 = time.perf_counter()
  compiled = step_fn.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(a.warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  start, times = _cpu_times(), []
  for _ in range(a.train_steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  median = statistics.median(times)
  result['train'] = {
      'compile_s': compile_s, 'median_s': median, 'min_s': min(times), 'max_s': max(times),
      'all_s': [round(t, 5) for t in times], 'images_per_s': batch_size / median,
      'warmup_steps': a.warmup, 'timed_steps': a.train_steps,
      'last_loss': float(metrics['loss']), 'foreign_cpu_cores': foreign_cpu_cores(start),
      'gflop_s': gflop['train_step'] * batch_size / median,
      'fraction_of_matmul_rate': gflop['train_step'] * batch_size / median / peak_gflop_s}

  # DDIM on the whole batch: compile alone, then one timed run.
  sampler = experiment.sampler(batch_size)
  key = parallel.replicate(np.asarray(jax.random.PRNGKey(a.seed)), mesh)
  labels = parallel.shard_host_array(np.zeros((batch_size,), np.int32), mesh)  # unconditional
  t0 = time.perf_counter()
  compiled_sampler = sampler.lower(state.params, key, labels).compile()
  sample_compile_s = time.perf_counter() - t0
  start = _cpu_times()
  t0 = time.perf_counter()
  images = jax.block_until_ready(compiled_sampler(state.params, key, labels))
  seconds = time.perf_counter() - t0
  n = a.ddim_steps
  result['sample'] = {'ddim': {
      'compile_s': sample_compile_s, 'steps': n, 'batch': batch_size,
      'seconds_per_batch': seconds, 'seconds_per_image': seconds / batch_size,
      'seconds_per_image_step': seconds / (n * batch_size),
      'image_steps_per_s': n * batch_size / seconds,
      'finite': bool(jnp.all(jnp.isfinite(images))), 'foreign_cpu_cores': foreign_cpu_cores(start),
      'gflop_s': gflop['forward'] * n * batch_size / seconds,
      'fraction_of_matmul_rate': gflop['forward'] * n * batch_size / seconds / peak_gflop_s,
      'scheduler': 'linear betas, T=1000, leading spacing, eta 0, x0 clipped'}}
  return result


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  a = args_from_flags()
  allocator = 'system malloc (--no_tcmalloc)' if a.no_tcmalloc else host_memory.use_tcmalloc()
  if allocator == 'missing':
    print(host_memory.INSTALL_HINT, file=sys.stderr)
  nets = [n.strip() for n in a.nets.split(',') if n.strip()]
  batches = [batch_size_of(n, a) for n in nets]
  devices.configure_cpu_devices(devices.choose_cpu_device_count(min(batches)))
  import jax  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  t_start = time.perf_counter()
  cpu = None
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), None)
  except OSError:
    pass
  result = {
      'benchmark': 'gen_jax U-Net train step and DDIM sampler (random weights, args.dtype)',
      'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
      'mode': 'quick' if a.quick else 'full', 'args': vars(a),
      'versions': {'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__},
      'devices': {'backend': jax.default_backend(), 'count': jax.device_count(),
                  'kind': jax.devices()[0].device_kind, 'xla_flags': os.environ.get('XLA_FLAGS'),
                  'malloc': {'tcmalloc': allocator, 'LD_PRELOAD': os.environ.get('LD_PRELOAD')}},
      'machine': {'nproc': os.cpu_count(), 'cpu_model': cpu, 'platform': platform.platform(),
                  'python': sys.version.split()[0]},
      'models': {}}
  # The machine's own yardstick: model GFLOP/s over this is what the nets make of the
  # hardware (on a GPU, the fp32 matmul rate; MFU against a datasheet peak is not computed).
  result['devices']['matmul_gflop_s'] = peak = matmul_gflop_s(parallel.make_mesh())
  for name in nets:
    result['models'][name] = bench_net(name, a, peak)
    m = result['models'][name]
    print(f"[{name}] params={m['params']:,} train {m['train']['images_per_s']:.1f} img/s "
          f"(compile {m['train']['compile_s']:.1f}s); DDIM "
          f"{m['sample']['ddim']['seconds_per_image_step'] * 1e3:.2f} ms/image-step; "
          f"{m['train']['fraction_of_matmul_rate']:.0%} and "
          f"{m['sample']['ddim']['fraction_of_matmul_rate']:.0%} of the matmul rate",
          file=sys.stderr, flush=True)
  result['total_wall_s'] = time.perf_counter() - t_start
  foreign = [p['foreign_cpu_cores'] for m in result['models'].values()
             for p in (m['train'], m['sample']['ddim']) if p['foreign_cpu_cores'] is not None]
  result['contaminated'] = bool(foreign) and max(foreign) > 0.1
  text = json.dumps(result, indent=2)
  print(text)
  if a.out:
    with open(a.out, 'w') as f:
      f.write(text + '\n')


def run():
  """The console script gen-jax-benchmark."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
