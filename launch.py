"""Entry point: python launch.py --config=configs/ddpm.py --workdir=runs/ddpm [--mode=...].

Parses flags, sets up devices and processes, and hands over to the config's family; with
--sweep=FILE, to gen_jax.platform.sweeps, which runs this same command once per trial.
Mistakes a user can fix end as one line on stderr and exit code 2.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

import experiments
from experiments import programs
from gen_jax.platform import host_memory
from gen_jax.platform import run_config
from gen_jax.platform.errors import UserError, config_file_error, config_path_from_argv

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs, samples.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval'],
                          'train: train (resuming from WORKDIR); sample: write samples '
                          'from the latest checkpoint; eval: score the latest checkpoint '
                          '(WORKDIR/eval/<step>.json).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', '',
                                   'host:port of process 0, for multi-process runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0, 'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, 'This process, in a multi-process run.')
_SWEEP = flags.DEFINE_string('sweep', None, 'A sweep file (sweeps/*.py): runs one trial per '
                             'override dict of its get_sweep(), in WORKDIR/<trial id>.')
_BACKEND = flags.DEFINE_enum('backend', 'local', ['local', 'skypilot'],
                             'Where --sweep trials run: local subprocesses (sweep.parallel '
                             'at a time) or SkyPilot managed jobs (the cloud extra).')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'With --sweep: print the trial commands '
                             '(skypilot: the task YAMLs) and run nothing.')
_PREEMPTED_EXIT_CODE = flags.DEFINE_integer(
    'preempted_exit_code', 0, 'Exit code after SIGTERM saved a checkpoint (SkyPilot trials '
    'use 75, so a preempted job is restarted rather than counted as finished). A '
    'multi-process run that lost a peer exits with it too (75 when it is 0).')
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv):
  """absl's parsing, with config mistakes (a file that does not load, unknown field, wrong
  type) as one line."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  # loading a config file runs its code
    file_error = config_file_error(e, config_path_from_argv(argv))
    if file_error:
      print(f'error: {file_error}', file=sys.stderr)
      sys.exit(2)
    if not isinstance(e, (flags.Error, AttributeError, KeyError, TypeError, ValueError)):
      raise
    message = ' '.join(str(e).replace('\\n', ' ').replace("\\'", "'").split()).strip('\'"')
    if isinstance(e, (AttributeError, KeyError)):
      message = 'unknown config field ' + message.replace("'", '')
      message += run_config.renamed_in(' '.join(str(a) for a in argv),
                                         experiments.renamed_fields())
    print(f'error: bad flag or config override: {message} '
          f'(see the config file, or --helpfull)', file=sys.stderr)
    sys.exit(2)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO.
  if len(argv) > 1:
    print(f'error: unexpected arguments {argv[1:]}; fields are set with --config.a.b=value.',
          file=sys.stderr)
    sys.exit(2)
  try:
    config = _CONFIG.value
    config.family  # pylint: disable=pointless-statement  # a failed load raises here
  except Exception as e:  # pylint: disable=broad-except  # loading a config file runs its code
    message = (config_file_error(e, config_path_from_argv(sys.argv)) or
               f'cannot load --config: {" ".join(str(e).split())}')
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)
  try:
    config_file = config_flags.get_config_filename(flags.FLAGS['config'])
    if _SWEEP.value:
      from gen_jax.platform import sweeps  # pylint: disable=g-import-not-at-top
      sys.exit(sweeps.launch(config, config_file,
                             config_flags.get_override_values(flags.FLAGS['config']),
                             _SWEEP.value, _WORKDIR.value, _BACKEND.value, _DRY_RUN.value,
                             mode=_MODE.value, launch_script=os.path.abspath(__file__)))
    if _DRY_RUN.value or flags.FLAGS['backend'].present:
      raise UserError('--backend and --dry_run go with --sweep=FILE.')
    if config.parallel.cpu_tcmalloc and host_memory.use_tcmalloc() == 'missing':
      print(host_memory.INSTALL_HINT, file=sys.stderr)
    result = programs.run(config, _WORKDIR.value, _MODE.value, config_file=config_file,
                          coordinator_address=_COORDINATOR.value,
                          num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
                          lost_peer_exit_code=_PREEMPTED_EXIT_CODE.value)
    if result == 'preempted':
      # Saved and closed. A sample grid or evaluation given up for the stop request may
      # still compute in XLA's threads: a single process does not wait for it at exit.
      import jax  # pylint: disable=g-import-not-at-top
      if jax.process_count() == 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_PREEMPTED_EXIT_CODE.value)  # pylint: disable=protected-access
      sys.exit(_PREEMPTED_EXIT_CODE.value)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
