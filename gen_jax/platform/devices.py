"""Devices and processes, before JAX starts: one CPU device per core, and joining a
multi-process (multi-host) job."""

import os

import jax

from gen_jax.platform import peers
from gen_jax.platform.errors import UserError

_DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'


def physical_cpu_cores() -> int:
  """Cores this process may run on (respects taskset / cgroup affinity)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not Linux.
    return os.cpu_count() or 1


def choose_cpu_device_count(divisor_of: int, requested: int = 0) -> int:
  """How many host-platform devices to create: one per core, dividing `divisor_of`.

  XLA's CPU backend runs each convolution on a single core, so data parallelism over
  one virtual device per core is what uses the whole CPU.

  Args:
    divisor_of: the count must divide this (the gcd of batch sizes the run uses).
    requested: an explicit count from the config (0 = automatic).
  Returns:
    The number of CPU devices to create.
  """
  if requested > 0:
    return requested
  cores = physical_cpu_cores()
  return max(d for d in range(1, cores + 1) if divisor_of % d == 0)


def configure_cpu_devices(count: int) -> None:
  """Asks XLA for `count` CPU devices, unless the user already set a count.

  Must run before JAX initialises its backends. Harmless on GPU/TPU hosts: the flag
  only shapes the CPU platform, which is then not the default backend.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if _DEVICE_COUNT_FLAG in flags:
    return  # The user's XLA_FLAGS win.
  os.environ['XLA_FLAGS'] = f'{flags} {_DEVICE_COUNT_FLAG}={count}'.strip()


def initialize_distributed(coordinator_address: str = '', num_processes: int = 0,
                           process_id: int = -1, peer_timeout_s: float = 30,
                           init_timeout_s: float = 300, log_dir: str = '') -> None:
  """Joins a multi-process (multi-host) job.

  With an explicit coordinator address all three values must be given (used for CPU
  multi-process runs and tests). Without one, JAX's cluster auto-detection is used when
  the environment is a known multi-host job (TPU pod, SLURM, Open MPI, SkyPilot nodes).
  Joining waits at most `init_timeout_s` for the other processes (then one line), and
  JAX's own heartbeat timeout follows `peer_timeout_s` (see gen_jax.platform.peers). With
  `log_dir`, the C++ runtime's stderr (gloo, coordination service) goes to
  LOG_DIR/process_<i>.log rather than the screen.
  """
  if coordinator_address:
    if num_processes < 1 or process_id < 0:
      raise UserError('--coordinator_address needs --num_processes and --process_id too.')
    if jax.config.jax_platforms in (None, '', 'cpu'):
      # CPU collectives across processes go through gloo.
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    if log_dir and num_processes > 1:
      peers.redirect_native_stderr(os.path.join(log_dir, f'process_{process_id}.log'))
    peers.join(coordinator_address, num_processes, process_id, peer_timeout_s,
               init_timeout_s)
  elif _in_multihost_environment():
    if log_dir:
      peers.redirect_native_stderr(os.path.join(log_dir, f'process_{os.getpid()}.log'))
    peers.join(None, None, None, peer_timeout_s, init_timeout_s)


def _in_multihost_environment() -> bool:
  env = os.environ
  if len(env.get('TPU_WORKER_HOSTNAMES', '').split(',')) > 1:
    return True
  for var in ('SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE', 'SKYPILOT_NUM_NODES'):
    if int(env.get(var, '1') or 1) > 1:
      return True
  return False
