"""The layers depend one way: launch.py -> experiments -> gen_jax, never upwards."""

import os
import pathlib
import re
import subprocess
import sys

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_LIBRARY = _ROOT / 'gen_jax'

# Run in a fresh interpreter: `experiments` (and anything under it) cannot be imported
# there, so any gen_jax module that imports it, at module level, fails.
_BLOCKED_IMPORT = r'''
import importlib, pkgutil, sys

class _NoExperiments:
  def find_spec(self, name, path=None, target=None):
    if name == 'experiments' or name.startswith('experiments.'):
      raise ImportError(f'gen_jax imported {name}: the library must not import experiments')
    return None

sys.meta_path.insert(0, _NoExperiments())
import gen_jax
names = sorted(m.name for m in pkgutil.walk_packages(gen_jax.__path__, 'gen_jax.'))
for name in names:
  importlib.import_module(name)
print(len(names))
'''

# Function-local imports only run when called, so the source is read too.
_UPWARD = re.compile(r'^\s*(import experiments\b|from experiments\b)', re.MULTILINE)


def test_every_library_module_imports_without_experiments():
  env = dict(os.environ, PYTHONPATH=str(_ROOT))
  result = subprocess.run([sys.executable, '-c', _BLOCKED_IMPORT], cwd=_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  # Every module was reached (a silent early stop would import nothing).
  expected = sum(1 for p in _LIBRARY.rglob('*.py') if p.name != '__init__.py') + sum(
      1 for p in _LIBRARY.rglob('__init__.py') if p.parent != _LIBRARY)
  assert int(result.stdout.split()[-1]) == expected


def test_no_library_source_imports_experiments():
  offenders = [f'{path.relative_to(_ROOT)}: {match.group(0).strip()}'
               for path in sorted(_LIBRARY.rglob('*.py'))
               for match in _UPWARD.finditer(path.read_text())]
  assert not offenders, offenders


def test_the_import_check_sees_an_upward_import():
  """The source check would catch an upward import (not a check that passes vacuously)."""
  assert _UPWARD.search('def f():\n  from experiments import vae\n')
  assert _UPWARD.search('  import experiments  # pylint: disable=g-import-not-at-top\n')
  assert not _UPWARD.search('"""experiments/ builds the families."""\n')
