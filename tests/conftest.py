"""Shared test helpers: run launch.py as a user would, with a tiny model."""

import inspect
import json
import os
import subprocess
import sys
import tempfile
import types

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One persistent XLA compilation cache for this test session, shared by the pytest process and
# every launch.py subprocess: most end-to-end tests compile the same tiny programs, and a
# subprocess that finds them compiled starts in seconds instead of tens of seconds. A fresh
# directory per session (GEN_JAX_TEST_COMPILATION_CACHE names a lasting one), so no test
# depends on what an earlier session left.
COMPILATION_CACHE = (os.environ.get('GEN_JAX_TEST_COMPILATION_CACHE')
                     or tempfile.mkdtemp(prefix='gen_jax_test_xla_cache_'))
# pytest-xdist workers start after this runs in the controller: they inherit the one cache.
os.environ['GEN_JAX_TEST_COMPILATION_CACHE'] = COMPILATION_CACHE
_CACHE_ENV = {
    'JAX_COMPILATION_CACHE_DIR': COMPILATION_CACHE,
    'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
    'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
    # No size limit, so no process takes the eviction lock: processes that lock and processes
    # that do not would race on an entry being written.
    'JAX_COMPILATION_CACHE_MAX_SIZE': '-1',
}
# In-process runs too: gen_jax.platform.compilation_cache keeps the settings it finds in the
# environment.
os.environ.update(_CACHE_ENV)
jax.config.update('jax_compilation_cache_dir', COMPILATION_CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)

# A U-Net and process small enough that a launch.py run takes seconds on one core.
TINY_DDPM = [
    '--config=configs/ddpm.py',
    '--config.data.image_size=8',
    '--config.eval.image_size=0',  # scored at 8px by the tests' 8px classifier
    '--config.model.ch=8',
    '--config.model.ch_mult=(1,2)',
    '--config.model.attn_resolutions=(4,)',
    '--config.model.num_groups=4',
    '--config.diffusion.num_timesteps=20',
    '--config.training.batch_size=16',
    '--config.training.log_every=1',
    '--config.training.sample_every=0',
    '--config.optim.warmup_steps=2',
    '--config.sampling.num_samples=8',
    '--config.training.async_checkpoints=False',
]


def launch_env(devices: int | None = 1) -> dict:
  """Environment for a launch.py subprocess with `devices` forced CPU devices."""
  env = dict(os.environ)
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env['PYTHONUNBUFFERED'] = '1'
  env['TF_CPP_MIN_LOG_LEVEL'] = '3'
  env.update(_CACHE_ENV)
  env.pop('XLA_FLAGS', None)
  if devices is not None:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  return env


def run_launch(args, devices: int | None = 1, timeout: int = 300, check: bool = True,
               env: dict | None = None):
  """Runs `python launch.py ARGS` (with `env` over `launch_env`, None removing a variable);
  returns the CompletedProcess."""
  env = {k: v for k, v in {**launch_env(devices), **(env or {})}.items() if v is not None}
  proc = subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), *args],
                        cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f'launch.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}')
  return proc


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def losses_by_step(workdir) -> dict[int, float]:
  return {m['step']: m['train/loss'] for m in read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
          if 'train/loss' in m}  # eval lines share steps with train lines


def assert_one_line_error(proc, *needles):
  """A user error: non-zero exit, no traceback, one 'error:' line naming the problem."""
  assert proc.returncode != 0, proc.stdout
  assert 'Traceback' not in proc.stderr, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1, proc.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]


@pytest.fixture
def tiny_ddpm():
  return list(TINY_DDPM)


# --- the two tiers -------------------------------------------------------------------------
# A test that starts a process (launch.py, a command, a second JAX process) or runs a whole
# program in-process (experiments.programs: data, training, checkpoints) is end to end:
# marked `e2e`, so `pytest -m "not e2e"` is the fast tier of unit tests. Found by reading
# the code the test runs (its function, the fixtures it uses and the tests/ helpers they
# call), so a new test is put in its tier without anyone marking it.
_END_TO_END = frozenset({'run_launch', 'subprocess', 'Popen', 'executable', 'programs'})


def _code_names(function) -> set[str]:
  names, stack = set(), [function.__code__]
  while stack:
    code = stack.pop()
    names.update(code.co_names)
    stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
  return names


def runs_end_to_end(function, seen=None) -> bool:
  """Whether `function`, or a tests/ function it calls, starts a process or runs a program."""
  seen = set() if seen is None else seen
  function = inspect.unwrap(function)
  if not inspect.isfunction(function) or function.__code__ in seen:
    return False
  seen.add(function.__code__)
  names = _code_names(function)
  if names & _END_TO_END:
    return True
  return any(runs_end_to_end(function.__globals__[name], seen) for name in names
             if inspect.isfunction(function.__globals__.get(name))
             and function.__globals__[name].__module__.startswith('tests'))


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    functions = [getattr(item, 'function', None)]
    for definitions in item._fixtureinfo.name2fixturedefs.values():  # pylint: disable=protected-access
      functions += [definition.func for definition in definitions]
    if any(f is not None and runs_end_to_end(f) for f in functions):
      item.add_marker(pytest.mark.e2e)
