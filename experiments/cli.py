"""What every command shares: absl flags, with a user's mistakes as one line.

`launch.py` and the commands of experiments/ (`python -m experiments.<name>`, or the
`gen-jax-<name>` console scripts of pyproject.toml) parse their flags with `parse_flags`:
absl's flags (`--snake_case`), and where a command takes a config file, ml_collections'
`--config=configs/x.py --config.a.b=value`. A flag or config mistake is one
`error: ...` line on stderr and exit code 2, as is every `UserError` a command raises.

A command defines its flags in a function that `run` calls, so importing a command (the
tests do, for its functions) defines no flags and several commands import side by side.
"""

import os
import sys
import types

from absl import app
from absl import flags
from absl import logging
from ml_collections.config_flags import config_flags as _config_flags

import experiments
from gen_jax.platform import run_config
from gen_jax.platform.errors import UserError, config_file_error, config_path_from_argv

_HELP = ('--help', '-help', '--helpshort', '-helpshort', '-?')
_HELPFULL = ('--helpfull', '-helpfull')


def _has_config_file_flag() -> bool:
  """Whether this program's --config is a config file flag (launch.py, experiments.step_cost)."""
  return 'config' in flags.FLAGS and _config_flags.is_config_flag(flags.FLAGS['config'])


def parse_flags(argv):
  """absl's parsing, with config mistakes (a file that does not load, unknown field, wrong
  type) and flag mistakes (an unknown flag, a bad value, a required one missing) as one
  line and exit code 2."""
  with_config = _has_config_file_flag()
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  # loading a config file runs its code
    file_error = config_file_error(e, config_path_from_argv(argv)) if with_config else None
    if file_error:
      print(f'error: {file_error}', file=sys.stderr)
      sys.exit(2)
    if not isinstance(e, (flags.Error, AttributeError, KeyError, TypeError, ValueError)):
      raise
    message = ' '.join(str(e).replace('\\n', ' ').replace("\\'", "'").split())
    if not with_config:
      print(f'error: bad flag: {message} (see --help)', file=sys.stderr)
      sys.exit(2)
    message = message.strip('\'"')
    if isinstance(e, (AttributeError, KeyError)):
      message = 'unknown config field ' + message.replace("'", '')
      message += run_config.renamed_in(' '.join(str(a) for a in argv),
                                       experiments.renamed_fields())
    print(f'error: bad flag or config override: {message} '
          f'(see the config file, or --helpfull)', file=sys.stderr)
    sys.exit(2)


def loaded_config(holder):
  """The config of a `config_flags.DEFINE_config_file` flag, loaded.

  Raises:
    UserError: the file did not load (ml_collections defers a missing file's error to the
      config's first use), in one line.
  """
  try:
    config = holder.value
    config.family  # pylint: disable=pointless-statement  # a failed load raises here
  except Exception as e:  # pylint: disable=broad-except  # loading a config file runs its code
    raise UserError(config_file_error(e, config_path_from_argv(sys.argv)) or
                    f'cannot load --config: {" ".join(str(e).split())}') from None
  return config


def load_config_file(path: str):
  """get_config() of a config file given by path, 'configs/x.py' or 'configs/x.py:arg',
  loaded as launch.py's --config loads it (ml_collections' loader; the config files
  import `configs.*`, a package of this project). Not locked.

  Raises:
    UserError: no such file, or one that does not load (one line).
  """
  file = path.partition(':')[0]
  if not os.path.exists(file):
    raise UserError(f'--config={file} does not exist.')
  try:
    config = _config_flags.ConfigFileFlagParser(name='config', lock_config=False).parse(path)
    config.family  # pylint: disable=pointless-statement  # a failed load raises here
  except Exception as e:  # pylint: disable=broad-except  # loading a config file runs its code
    text = str(e).strip()
    if 'Error whilst parsing config file' in text:  # ml_collections' message holds a traceback
      text = text.splitlines()[-1]
    raise UserError(config_file_error(e, file) or
                    f'cannot load --config={path}: {" ".join(text.split())}') from None
  return config


def flag_values(*names: str) -> types.SimpleNamespace:
  """The parsed values of flags `names`, as attributes (in that order)."""
  return types.SimpleNamespace(**{name: flags.FLAGS[name].value for name in names})


def _help(argv, module) -> None:
  """--help (--helpshort, -?): the command's docstring and its flags; --helpfull: every
  flag. On stdout, exit code 0. Nothing when argv asks for neither."""
  args = argv[1:argv.index('--')] if '--' in argv else argv[1:]
  full = any(a in _HELPFULL for a in args)
  if not full and not any(a in _HELP for a in args):
    return
  text = (module.__doc__ or '').rstrip('\n') + '\n'
  name = sys.argv[0] if module.__name__ == '__main__' else module.__name__  # as absl keys it
  listing = flags.FLAGS.get_help() if full else flags.FLAGS.module_help(name)
  if listing:
    text += '\nflags:\n' + listing + '\n'
  if not full:
    text += '\nTry --helpfull to get a list of all flags.\n'
  sys.stdout.write(text)
  sys.stdout.flush()
  sys.exit(0)


def run(main, define_flags, arguments: tuple[str, ...] = ()) -> None:
  """Runs a command of experiments/: its flags defined and parsed, then `main(argv)`.

  As launch.py runs: absl's `app.run`, flags parsed by `parse_flags`, absl logging at
  WARNING (unless --verbosity is given). Besides: --help prints the command's docstring
  and flags with exit code 0, positional arguments other than `arguments` and any
  `UserError` from `main` are one `error:` line with exit code 2.

  Args:
    main: the command's main(argv); argv[1:] holds one value per name of `arguments`.
    define_flags: defines the command's flags (called here, once).
    arguments: the names of the positional arguments the command takes (for errors).
  """
  module = sys.modules[main.__module__]
  define_flags()

  def parse(argv):
    _help(argv, module)
    return parse_flags(argv)

  def checked_main(argv):
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO.
    if len(argv) - 1 != len(arguments):
      print(f'error: give {" ".join(arguments)} (got {argv[1:]}) and the rest as --flag=value.'
            if arguments else
            f'error: unexpected arguments {argv[1:]}; values are given as --flag=value.',
            file=sys.stderr)
      sys.exit(2)
    try:
      return main(argv)
    except UserError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)

  app.run(checked_main, flags_parser=parse)

