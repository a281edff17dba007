"""One way to run every command: `python -m experiments.<name>` (or its `gen-jax-<name>`
console script) with absl's `--snake_case` flags, like launch.py; a misspelt flag is one
line; nothing edits sys.path."""

import importlib
import os
import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import REPO, assert_one_line_error, launch_env

# Each command of experiments/ and the flags its --help must list.
COMMANDS = {
    'benchmark': ('quick', 'nets', 'warmup', 'train_steps', 'ddim_steps', 'small_batch',
                  'cifar_batch', 'dtype', 'seed', 'out', 'no_tcmalloc'),
    'export_diffusers': ('workdir', 'out', 'raw'),
    'import_diffusers': ('source', 'workdir', 'config', 'revision'),
    'input_benchmark': ('workdir', 'images', 'batch', 'batches', 'workers', 'prefetch',
                        'sources', 'out'),
    'ledger': ('output',),
    'quality_curve': ('workdir', 'classifier_workdir', 'cache_dir', 'num_samples',
                      'batch_size', 'steps', 'external', 'out', 'name', 'label', 'merge'),
    'sampler_quality': ('workdir', 'classifier_workdir', 'cache_dir', 'num_samples',
                        'batch_size', 'nfe', 'samplers', 'no_ddpm', 'out'),
    'step_cost': ('config', 'batch', 'steps', 'warmup', 'out'),
    'truncation': ('workdir', 'truncations', 'num_samples', 'batch_size',
                   'classifier_workdir', 'cache_dir', 'out'),
}


def _scripts() -> dict[str, str]:
  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)['project']['scripts']


def _command(*args, timeout=120):
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, env=launch_env(1),
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize('name', sorted(COMMANDS))
def test_help_lists_the_flags(name):
  proc = _command(f'experiments.{name}', '--help')
  assert proc.returncode == 0, proc.stderr[-3000:]
  # The docstring's usage line, in the form the command runs in.
  assert f'python -m experiments.{name}' in proc.stdout, proc.stdout
  listed = set(re.findall(r'^\s+--(?:\[no\])?(\w+):', proc.stdout, re.MULTILINE))
  assert listed == set(COMMANDS[name]), proc.stdout


def test_every_command_has_a_console_script():
  scripts = _scripts()
  assert scripts == {f'gen-jax-{name.replace("_", "-")}': f'experiments.{name}:run'
                     for name in COMMANDS}
  on_disk = {f[:-3] for f in os.listdir(os.path.join(REPO, 'experiments'))
             if f.endswith('.py') and 'app.run' in _source(os.path.join('experiments', f))}
  assert on_disk <= set(COMMANDS) | {'cli'}, on_disk  # every absl command is listed here


@pytest.mark.parametrize('script', sorted(_scripts()))
def test_console_script_names_an_importable_callable(script):
  module_name, _, attribute = _scripts()[script].partition(':')
  entry = getattr(importlib.import_module(module_name), attribute)
  assert callable(entry)


def test_importing_every_command_defines_no_flags():
  """The tests import commands side by side for their functions: the flags are defined when
  a command runs (several commands define --workdir and --out)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  for name in COMMANDS:
    importlib.import_module(f'experiments.{name}')
  defined = set(flags.FLAGS)
  assert not {'workdir', 'out', 'num_samples', 'source'} & defined, defined


@pytest.mark.parametrize('args,needles', [
    (['experiments.quality_curve', '--workdir=/tmp', '--num-samples=3'],
     ("Unknown command line flag 'num-samples'", 'num_samples')),  # the old spelling
    (['experiments.export_diffusers', '--workdir=/tmp', '--out=/tmp/x', '--bogus'],
     ("Unknown command line flag 'bogus'",)),
    (['experiments.step_cost', '--config=configs/ddpm.py', '--bogus'],
     ("Unknown command line flag 'bogus",)),
    (['experiments.step_cost', '--config=configs/ddpm.py', '--config.training.num_stepz=3'],
     ('unknown config field num_stepz', 'num_steps')),
    (['experiments.quality_curve', '--workdir=/tmp', '--num_samples=x'],
     ('--num_samples=x',)),
    (['experiments.truncation'], ('--workdir',)),  # required
    (['experiments.ledger'], ('RUNS_DIR',)),
    (['experiments.export_diffusers', '--workdir=/tmp', '--out=/tmp/x', 'extra'],
     ("unexpected arguments ['extra']",)),
])
def test_flag_mistakes_are_one_line(args, needles):
  proc = _command(*args)
  assert proc.returncode == 2, proc.stdout + proc.stderr
  assert_one_line_error(proc, *needles)


def _source(path: str) -> str:
  with open(os.path.join(REPO, path)) as f:
    return f.read()


def test_nothing_edits_sys_path():
  files = ['launch.py'] + [os.path.join('experiments', f)
                           for f in sorted(os.listdir(os.path.join(REPO, 'experiments')))
                           if f.endswith('.py')]
  offenders = [f for f in files if 'sys.path' in _source(f)]
  assert not offenders, offenders
