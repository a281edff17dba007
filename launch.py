"""Entry point: python launch.py --config=configs/ddpm.py --workdir=runs/ddpm [--mode=...].

Parses flags, sets up devices and processes, and hands over to the config's family.
Mistakes a user can fix end as one line on stderr and exit code 2.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from gen_jax import runner
from gen_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs, samples.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'sample'],
                          'train: train (resuming from WORKDIR); sample: write samples '
                          'from the latest checkpoint.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', '',
                                   'host:port of process 0, for multi-process runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0, 'Processes in a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, 'This process, in a multi-process run.')
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv):
  """absl's parsing, with config mistakes (unknown field, wrong type) as one line."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = ' '.join(str(e).replace('\\n', ' ').replace("\\'", "'").split()).strip('\'"')
    if isinstance(e, (AttributeError, KeyError)):
      message = 'unknown config field ' + message.replace("'", '')
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
  except (OSError, AttributeError) as e:
    print(f'error: cannot load --config: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(2)
  try:
    runner.run(config, _WORKDIR.value, _MODE.value, coordinator_address=_COORDINATOR.value,
               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
