"""The one exception type for mistakes a user can fix (bad config, data, workdir), and the
one-line account of a config file that does not load.

`launch.py` prints its message as a single line and exits non-zero, without a traceback.
"""

import os
import traceback


class UserError(Exception):
  """A problem with the user's input; the message says what is wrong and what to do."""


def config_path_from_argv(argv) -> str:
  """The file of `--config=FILE[:ARGS]` (or `--config FILE`) in argv; '' if absent."""
  value = ''
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      value = arg[len('--config='):]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
  return value.split(':', 1)[0]  # ml_collections' `file.py:arg` passes arg to get_config


def config_file_error(error: BaseException, path: str) -> str | None:
  """One line saying why the config file `path` did not load, or None if `error` is not
  about the file itself (an override, say).

  ml_collections raises whatever loading the file raised (SyntaxError, NameError,
  ImportError, ...; with an override, an OSError about "an earlier failure"), so the
  file's own errors are told apart by where they happened: in the file or a module beside
  it (another config file it builds on, configs/ddpm.py say), whose `file:line` the
  message names.

  Args:
    error: what parsing the flags or reading the config raised.
    path: the --config file as the user gave it.
  Returns:
    'cannot load --config=PATH: ...' or None.
  """
  if not path:
    return None
  head = f'cannot load --config={path}'
  text = ' '.join(str(error).split())
  if not os.path.exists(path):
    if isinstance(error, OSError) or 'earlier failure' in text:
      return (f'{head}: no such file (paths are relative to the current directory '
              f'{os.getcwd()}; the configs are configs/*.py).')
    return None
  if os.path.isdir(path):
    return f'{head}: it is a directory; give a config file (configs/*.py).'
  if isinstance(error, OSError) and ('earlier failure' in text or 'config file' in text):
    return f'{head}: {text}'
  config = os.path.abspath(path)
  here = os.path.dirname(config) + os.sep
  frames = traceback.extract_tb(error.__traceback__)
  # From the config file's first frame inward: its own lines and those of modules beside it.
  first = next((i for i, f in enumerate(frames) if os.path.abspath(f.filename) == config), None)
  inside = [] if first is None else [f for f in frames[first:]
                                     if os.path.abspath(f.filename).startswith(here)]
  where = (inside[-1].filename, inside[-1].lineno) if inside else None
  if isinstance(error, SyntaxError) and error.filename:
    syntax_file = os.path.abspath(error.filename)
    if syntax_file == config or (inside and syntax_file.startswith(here)):
      where, text = (error.filename, error.lineno), error.msg
  if where is None:
    if isinstance(error, AttributeError) and 'get_config' in text:
      return f'{head}: it defines no get_config() returning the config.'
    return None
  filename = os.path.relpath(where[0]) if not os.path.isabs(path) else where[0]
  return f'{head}: {type(error).__name__} at {filename}:{where[1]}: {text}'
