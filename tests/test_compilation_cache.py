"""The persistent compilation cache of every run (`training.compilation_cache`)."""

import os

import pytest

from gen_jax.platform import compilation_cache
from gen_jax.platform.errors import UserError
from tests.conftest import TINY_DDPM, run_launch


def test_auto_takes_jax_variable_then_the_user_cache_directory(tmp_path):
  assert compilation_cache.resolve('') == ''
  assert compilation_cache.resolve('  ') == ''
  env = {'JAX_COMPILATION_CACHE_DIR': '/jax/cache', 'XDG_CACHE_HOME': '/xdg'}
  assert compilation_cache.resolve('auto', env) == '/jax/cache'
  assert compilation_cache.resolve('auto', {'XDG_CACHE_HOME': '/xdg'}) == (
      '/xdg/gen_jax/jax_compilation_cache')
  home = os.path.expanduser('~')
  assert compilation_cache.resolve('auto', {}) == os.path.join(
      home, '.cache', 'gen_jax', 'jax_compilation_cache')
  # A directory given wins over JAX's variable; ~ is the user's home.
  assert compilation_cache.resolve('~/xla', env) == os.path.join(home, 'xla')
  assert compilation_cache.resolve(str(tmp_path), env) == str(tmp_path)


def test_a_directory_that_cannot_be_made_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  with pytest.raises(UserError, match=r"training.compilation_cache=.*cannot create .*file/xla"
                                      r".* give a writable directory, or '' to turn"):
    compilation_cache.configure(str(tmp_path / 'file' / 'xla'), env={})


def _entries(path) -> list[str]:
  # JAX writes NAME-cache (the executable) and, for the size limit's LRU, NAME-atime.
  return sorted(n for n in os.listdir(path) if n.endswith('-cache')) if path.exists() else []


def _run(workdir, cache_setting, env_cache_dir, steps=2):
  # gen_jax's own limits (the tests' environment sets JAX's), with its eviction lock.
  env = {'JAX_COMPILATION_CACHE_DIR': str(env_cache_dir),
         'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': None,
         'JAX_COMPILATION_CACHE_MAX_SIZE': None}
  proc = run_launch([*TINY_DDPM, f'--workdir={workdir}', f'--config.training.num_steps={steps}',
                     f'--config.training.compilation_cache={cache_setting}'], env=env)
  assert 'compilation cache' not in proc.stderr, proc.stderr  # JAX warns when it cannot use it
  return proc


def test_a_repeated_run_compiles_nothing_new(tmp_path):
  cache, elsewhere = tmp_path / 'xla', tmp_path / 'jax_variable'
  _run(tmp_path / 'first', str(cache), elsewhere)
  first = _entries(cache)
  assert len(first) >= 5  # init, the train step, the sampler's programs and more
  assert not _entries(elsewhere)  # the config's directory wins over JAX's variable
  # The same run in a new workdir: every program is read back, none compiled and added.
  _run(tmp_path / 'second', str(cache), elsewhere)
  assert _entries(cache) == first


def test_an_empty_setting_turns_the_cache_off(tmp_path):
  cache = tmp_path / 'jax_variable'
  cache.mkdir()
  _run(tmp_path / 'run', '', cache)  # JAX's own variable would have turned it on
  assert not _entries(cache)
