"""JAX's persistent compilation cache for every run (`training.compilation_cache`).

A restarted run (a preempted pod job, a resume, the same command again) compiles the same
step, sampling and evaluation programs again; with the cache on, XLA's executables are read
back from disk instead (a BigGAN-128 step took 135 s to compile on an H200). The cache is on
by default, in the user's cache directory; the setting is a directory, 'auto' or '' (off).
"""

import os

import jax

from gen_jax.platform.errors import UserError

AUTO = 'auto'
# Programs that compile faster than this are not kept. JAX's default is 1 s; every program
# is kept instead, since the many small ones (restore, metrics, the sampler's pieces) add up:
# the quickstart resumed in 16 s with all 55 of them (2.3 MB), in 20.5 s with the 4 that take
# over half a second (jax 0.12.1, 2-core CPU).
MIN_COMPILE_SECONDS = 0.0
# The cache evicts its least recently used entries above this size (JAX's default: no limit).
MAX_BYTES = 4 * 2**30


def default_dir(env=None) -> str:
  """$JAX_COMPILATION_CACHE_DIR if set, else $XDG_CACHE_HOME/gen_jax/jax_compilation_cache
  (~/.cache when XDG_CACHE_HOME is unset)."""
  env = os.environ if env is None else env
  if env.get('JAX_COMPILATION_CACHE_DIR'):
    return env['JAX_COMPILATION_CACHE_DIR']
  cache_home = env.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(cache_home, 'gen_jax', 'jax_compilation_cache')


def resolve(setting: str, env=None) -> str:
  """The cache directory a `training.compilation_cache` value names ('' when off)."""
  setting = (setting or '').strip()
  if not setting:
    return ''
  if setting == AUTO:
    return default_dir(env)
  return os.path.expanduser(setting)


def configure(setting: str, env=None) -> str:
  """Turns the persistent cache on in `resolve(setting)` before the first compilation, after
  the processes have joined (a multi-process CPU run compiles without it).

  Settings a user gave JAX through its own environment variables
  (JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS, JAX_COMPILATION_CACHE_MAX_SIZE) are kept.

  Returns:
    The cache directory, or '' when the setting turns the cache off (JAX's
    JAX_COMPILATION_CACHE_DIR included).
  Raises:
    UserError: the directory cannot be created.
  """
  env = os.environ if env is None else env
  path = resolve(setting, env)
  if path and jax.process_count() > 1 and jax.default_backend() == 'cpu':
    # jax 0.12.1: processes of a CPU (gloo) run that read their programs from the cache
    # hang at the first step (tests/test_parallel.py did with a warm cache); they compile.
    if jax.process_index() == 0:
      print('compilation cache: off for this multi-process CPU run (its processes hang on '
            'cached programs with jax 0.12).', flush=True)
    path = ''
  if not path:
    # Off, also where JAX_COMPILATION_CACHE_DIR would have turned it on.
    jax.config.update('jax_enable_compilation_cache', False)
    return ''
  if '://' not in path:  # a gs:// cache goes through etils, which JAX imports itself
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:
      raise UserError(f'training.compilation_cache={setting!r}: cannot create {path} '
                      f'({e.strerror}); give a writable directory, or \'\' to turn the '
                      f'cache off.') from None
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', path)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in env:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  if 'JAX_COMPILATION_CACHE_MAX_SIZE' not in env:
    jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  return path
