"""What every run shares around its program: checks of the workdir and the shared config
blocks, device and process setup, stop requests (SIGTERM / Ctrl-C) and the dead-peer
watchdog.

The program itself (train, sample or eval of a family) runs in the caller's block,
`with session(...) as run:` (experiments.programs): the library knows no family and calls
nothing back (launch.py -> experiments -> gen_jax).
"""

import contextlib
import dataclasses
import math
import os
import tempfile

import jax

from gen_jax.platform import checkpoint
from gen_jax.platform import compilation_cache
from gen_jax.platform import devices
from gen_jax.platform import peers
from gen_jax.platform import preemption
from gen_jax.platform.errors import UserError

_SKYPILOT_COORDINATOR_PORT = 8476  # on the head node; the port JAX's own cluster detection uses


def skypilot_processes(env=None) -> tuple[str, int, int] | None:
  """(coordinator address, processes, this process) in a multi-node SkyPilot job, else None.

  SkyPilot runs the task's command once on every node (every host of a TPU pod slice)
  with SKYPILOT_NODE_IPS (one per line, the head first), SKYPILOT_NUM_NODES and
  SKYPILOT_NODE_RANK set. JAX's cluster detection does not read them, so they are
  turned into an explicit coordinator: one process per node, the head node's first.
  """
  env = os.environ if env is None else env
  nodes = int(env.get('SKYPILOT_NUM_NODES', '1') or 1)
  if nodes <= 1:
    return None
  head = env['SKYPILOT_NODE_IPS'].split()[0]
  return f'{head}:{_SKYPILOT_COORDINATOR_PORT}', nodes, int(env['SKYPILOT_NODE_RANK'])


def setup_devices(config, coordinator_address: str = '', num_processes: int = 0,
                  process_id: int = -1, workdir: str = '') -> None:
  """Before JAX starts: one CPU device per core (dividing the batches), then processes
  (their C++ logs in WORKDIR/logs), then, before the first compilation, the persistent
  compilation cache."""
  divisor = math.gcd(config.training.batch_size, config.sampling.num_samples,
                     config.eval.batch_size)
  devices.configure_cpu_devices(
      devices.choose_cpu_device_count(divisor, config.parallel.cpu_devices))
  if not coordinator_address and skypilot_processes():
    coordinator_address, num_processes, process_id = skypilot_processes()
  p = config.parallel
  devices.initialize_distributed(
      coordinator_address, num_processes, process_id, p.peer_timeout_s,
      p.init_timeout_s, os.path.join(workdir, 'logs') if workdir else '')
  compilation_cache.configure(config.training.compilation_cache)


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


def check_workdir(workdir: str, mode: str) -> None:
  """One-line errors, before any computation, for a workdir the run could not write to.

  An existing workdir must be a directory in which a file can be created (a probe file,
  removed at once: permission bits alone do not tell, e.g. on a read-only mount). A
  workdir that does not exist yet needs its nearest existing parent to be such a
  directory when training creates it; `--mode=sample` and `eval` refuse it at once (no
  checkpoint there).

  Args:
    workdir: the --workdir as given.
    mode: 'train', 'sample' or 'eval'.
  Raises:
    UserError: the workdir (or its parent) is a file, or cannot be written.
  """
  path = os.path.abspath(workdir)
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    if parent == path:
      raise UserError(f'--workdir={workdir} is a file, not a directory; give a directory '
                      f'for the run.')
    raise UserError(f'--workdir={workdir} cannot be a directory: {parent} is a file; give '
                    f'a directory for the run.')
  if parent != path and mode != 'train':
    raise UserError(f'--workdir={workdir} does not exist, so there is no checkpoint to '
                    f'{mode} from; train there first (--mode=train).')
  try:
    fd, probe = tempfile.mkstemp(prefix='.gen_jax_write_check_', dir=parent)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    what = (f'--workdir={workdir}' if parent == path
            else f'{parent} (to create --workdir={workdir} in)')
    raise UserError(f'cannot write to {what}: {e.strerror}; give a directory you can write '
                    f'to, or change its permissions.') from None


@dataclasses.dataclass
class Session:
  """A run under way: its absolute workdir, and what its program returned ('preempted'
  when a stop request came before the first step)."""
  workdir: str
  result: str = 'preempted'


@contextlib.contextmanager
def session(config, workdir: str, mode: str, lost_peer_exit_code: int = 0, **distributed):
  """Everything around a run's program: `with runner.session(...) as run:` checks the
  workdir and the shared blocks, sets up devices and processes, and (train mode) turns
  SIGTERM / Ctrl-C into a checkpoint; the caller runs the program in the block and sets
  `run.result`.

  Args:
    config: the run's config.
    workdir: the run's directory.
    mode: 'train', 'sample' or 'eval' (train runs under the stop-request handlers).
    lost_peer_exit_code: the exit code when a peer process dies (0: 75).
    **distributed: coordinator_address, num_processes, process_id.
  Yields:
    The Session.
  """
  if not workdir:
    raise UserError('--workdir is empty; give a directory for the run.')
  # Scoring a sample file needs no checkpoint: its workdir is only where the manifest goes.
  scores_file = mode == 'eval' and config.eval.samples_file
  check_workdir(workdir, 'train' if scores_file else mode)
  run = Session(os.path.abspath(workdir))
  if mode != 'train':
    with _processes(config, run.workdir, lost_peer_exit_code, **distributed):
      yield run
    return
  # SIGTERM / Ctrl-C from here on stop the run with a checkpoint (gen_jax.platform.preemption),
  # also while it starts (data, compilation) and before its first step.
  with preemption.Signals():
    try:
      with _processes(config, run.workdir, lost_peer_exit_code, **distributed):
        yield run
    except preemption.Interrupted as e:
      print(f'{e} before the first step: nothing new to save; exiting.', flush=True)
      run.result = 'preempted'


@contextlib.contextmanager
def _processes(config, workdir: str, lost_peer_exit_code: int = 0, **distributed):
  """Devices and processes set up, and the dead-peer watchdog around the block."""
  validate_training(config)
  setup_devices(config, workdir=workdir, **distributed)
  preemption.reinstall()  # jax.distributed.initialize took SIGTERM over
  watchdog = None
  if jax.process_count() > 1:
    peers.check_same_config(config.to_json_best_effort(sort_keys=True))
    watchdog = peers.start_watchdog(config.parallel.peer_timeout_s, lost_peer_exit_code,
                                    lambda: peers.last_checkpoint_note(workdir))
  try:
    yield
  except checkpoint.SaveFailed:
    if watchdog is not None:  # a save's collective failed: most likely a peer died
      watchdog.wait_for_verdict()  # exits with the lost-peer line if so
      watchdog.stop(done=False)
    raise
  except UserError:
    if watchdog is not None:  # peers that did not raise it notice this one's end
      watchdog.stop(done=False)
    raise
  except Exception:
    if watchdog is not None:  # a collective failed: most likely a peer died
      watchdog.wait_for_verdict()
    raise
  if watchdog is not None:
    watchdog.stop(done=True)
