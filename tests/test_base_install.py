"""The base install has no TensorFlow: every module imports, the digits and ArrayRecord tfds
data train, and a dataset that needs TensorFlow is one line naming the extra.

The test environment has the tfds extra, so these tests run Python on a copy of its
site-packages without TensorFlow (symlinks to every other entry): there `import tensorflow`
fails and `importlib.util.find_spec('tensorflow')` is None, as after `pip install -e .`.
"""

import os
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import REPO, TINY_DDPM, launch_env

# site-packages entries of TensorFlow itself (tensorflow-datasets and tensorflow-metadata stay).
_TENSORFLOW_ENTRIES = ('tensorflow',)
_TENSORFLOW_DIST_PREFIXES = ('tensorflow-', 'tensorflow_cpu-', 'tensorflow_gpu-')


@pytest.fixture(scope='module')
def no_tensorflow_env(tmp_path_factory):
  """Environment for `python -S` with site-packages minus TensorFlow on PYTHONPATH."""
  site = sysconfig.get_paths()['purelib']
  farm = tmp_path_factory.mktemp('site_without_tensorflow')
  for entry in os.listdir(site):
    if entry in _TENSORFLOW_ENTRIES or entry.startswith(_TENSORFLOW_DIST_PREFIXES):
      continue
    os.symlink(os.path.join(site, entry), farm / entry)
  env = launch_env(1)
  env['PYTHONPATH'] = os.pathsep.join([REPO, str(farm)])
  return env


def run_python(env, args, timeout=300):
  # -S: no site-packages of the environment (the copy on PYTHONPATH stands for it).
  return subprocess.run([sys.executable, '-S', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_tensorflow_is_absent_there_and_every_module_imports(no_tensorflow_env):
  script = r'''
import importlib, importlib.util, pkgutil, sys
assert importlib.util.find_spec('tensorflow') is None, 'TensorFlow is still reachable'
import jax, flax, optax, orbax.checkpoint, grain, tensorflow_datasets
names = []
for package in ('gen_jax', 'experiments', 'configs'):
  module = importlib.import_module(package)
  names.append(package)
  for info in pkgutil.walk_packages(module.__path__, package + '.'):
    importlib.import_module(info.name)
    names.append(info.name)
assert 'tensorflow' not in sys.modules
print(len(names))
'''
  proc = run_python(no_tensorflow_env, ['-c', script])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert int(proc.stdout.split()[-1]) > 60  # every module of the three packages


def test_digits_train_without_tensorflow(no_tensorflow_env, tmp_path):
  proc = run_python(no_tensorflow_env, [
      'launch.py', *TINY_DDPM, f'--workdir={tmp_path}/run', '--config.training.num_steps=2',
      '--config.parallel.cpu_tcmalloc=False'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'done: 2 steps' in proc.stdout


def test_a_tensorflow_decoded_dataset_is_one_line_naming_the_extra(no_tensorflow_env, tmp_path):
  proc = run_python(no_tensorflow_env, [
      'launch.py', *TINY_DDPM, f'--workdir={tmp_path}/run', '--config.training.num_steps=2',
      # cifar10: mnist and fashion_mnist also read IDX files, which need no TensorFlow.
      '--config.parallel.cpu_tcmalloc=False', '--config.data.dataset=cifar10',
      '--config.data.loader=memory', f'--config.data.data_dir={tmp_path}/tfds'])
  assert proc.returncode == 2, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: tfds dataset 'cifar10' with data.loader='memory' is "
                             "decoded through TensorFlow")
  assert 'pip install -e ".[tfds]"' in lines[0] and "data.loader='grain'" in lines[0]


def test_array_record_tfds_data_trains_without_tensorflow(no_tensorflow_env, tmp_path):
  # Prepared here, where the test environment's TensorFlow encodes the records; read there.
  from experiments import input_benchmark  # pylint: disable=g-import-not-at-top
  folder = input_benchmark.generate_folder(str(tmp_path / 'jpegs'), 24)
  name = input_benchmark.build_tfds(folder, str(tmp_path / 'tfds'))
  proc = run_python(no_tensorflow_env, [
      'launch.py', *TINY_DDPM, f'--workdir={tmp_path}/run', '--config.training.num_steps=2',
      '--config.parallel.cpu_tcmalloc=False', f'--config.data.dataset={name}',
      '--config.data.loader=grain', f'--config.data.data_dir={tmp_path}/tfds',
      '--config.training.batch_size=8'])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'done: 2 steps' in proc.stdout
