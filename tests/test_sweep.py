"""Launcher sweeps: sweep files, trial ids, the local backend end to end, SkyPilot tasks."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import ddpm
from gen_jax.platform import runner
from gen_jax.platform.errors import UserError
from gen_jax.platform.sweeps import spec
from tests.conftest import REPO, TINY_DDPM, assert_one_line_error, launch_env


@pytest.fixture(scope='session')
def compile_cache(tmp_path_factory):
  """One persistent XLA cache for the session: trials of one program compile it once."""
  return str(tmp_path_factory.getbasetemp() / 'jax_compilation_cache')


def fast_env(devices: int, cache: str) -> dict:
  """launch.py's environment for these tests. XLA's backend optimisation level 0 compiles
  the tiny U-Net about 5x faster; the tests compare runs with each other, not speed."""
  env = launch_env(devices)
  env['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'
  env['JAX_COMPILATION_CACHE_DIR'] = cache
  return env


def launch(args, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=timeout)


def write_sweep(path, body: str) -> str:
  path.write_text(body)
  return str(path)


def test_expansion_trial_ids_and_flags(tmp_path):
  sweep_file = write_sweep(tmp_path / 'grid.py', (
      'import numpy as np\n'
      'from gen_jax.platform.sweeps import spec\n'
      'def get_sweep():\n'
      "  return spec.product({'optim.lr': np.array([1e-3, 3e-4]), 'model.ch_mult': [(1, 2), [1]],"
      " 'seed': [0, 1]}) + [{'model.ch': 16, 'sampling.num_steps': 5}]\n"))
  trials = spec.expand(ddpm.get_config(), spec.load(sweep_file), 'test')
  assert len(trials) == 9
  ids = [t.id for t in trials]
  assert ids[:2] == ['lr=0.001,ch_mult=1-2,seed=0', 'lr=0.001,ch_mult=1-2,seed=1']
  assert ids[2] == 'lr=0.001,ch_mult=1,seed=0'  # a list value for a tuple field
  assert ids[4] == 'lr=0.0003,ch_mult=1-2,seed=0'  # numpy values become Python floats
  # 'num_steps' is also a training field name elsewhere, but only sampling's is swept here.
  assert ids[8] == 'ch=16,num_steps=5'
  assert len(set(ids)) == len(ids)
  assert trials[2].config.model.ch_mult == (1,)
  assert trials[8].config.model.ch == 16 and trials[0].config.model.ch == 32
  flags = spec.trial_flags({'training.num_steps': 300, 'seed': 7, 'sweep.parallel': 2,
                            'sweep.vmap': {'optim': {'lr': [1e-3, 2e-3]}}}, trials[1])
  assert flags == ['--config.training.num_steps=300', '--config.seed=1',
                   "--config.sweep.vmap={'optim': {'lr': [0.001, 0.002]}}",
                   '--config.optim.lr=0.001', '--config.model.ch_mult=(1,2)']
  assert spec.flag_value((4,)) == '(4,)' and spec.flag_value(False) == 'false'
  # Trials with the same overrides would share a workdir.
  with pytest.raises(UserError, match='share one workdir'):
    spec.expand(ddpm.get_config(), [{'seed': 1}, {'seed': 1}], 'test')


@pytest.mark.parametrize('body,needles', [
    ("def get_sweep():\n  return [{'optim.lr': 1e-3}, {'optim.lrr': 1e-3}]\n",
     ["trial 1: unknown config field 'optim.lrr'", "did you mean 'optim.lr'"]),
    ('def get_sweep():\n  return []\n', ['get_sweep() returned an empty list']),
])
def test_bad_sweep_files_give_one_line_errors(tmp_path, body, needles):
  sweep_file = write_sweep(tmp_path / 'bad.py', body)
  proc = launch(['--config=configs/ddpm.py', f'--sweep={sweep_file}', f'--workdir={tmp_path}/w'],
                launch_env(1), timeout=120)
  assert_one_line_error(proc, f'--sweep={sweep_file}', *needles)
  assert proc.returncode == 2 and not os.path.exists(f'{tmp_path}/w')


@pytest.mark.parametrize('body,needle', [
    ('x = 1\n', 'has no get_sweep()'),
    ('def get_sweep():\n  return {"seed": 1}\n', 'must return a list of dicts'),
    ('def get_sweep():\n  raise ValueError("no grid")\n', 'raised ValueError: no grid'),
    ("def get_sweep():\n  return [{'training.num_steps': 1.5}]\n", 'does not fit the config'),
])
def test_more_bad_sweep_files(tmp_path, body, needle):
  with pytest.raises(UserError, match=needle) as e:
    spec.expand(ddpm.get_config(), spec.load(write_sweep(tmp_path / 'bad.py', body)), 'test')
  assert '\n' not in str(e.value)


def test_local_sweep_runs_is_killed_resumes_and_skips_finished_trials(tmp_path, compile_cache):
  # One trial at a time: two processes compiling one program at once can garble JAX's
  # persistent cache entry (written unlocked). 'seed=0' is short, and 'seed=1,...' long
  # enough to be stopped while it trains.
  sweep_file = write_sweep(tmp_path / 'seeds.py', (
      "def get_sweep():\n"
      "  return [{'seed': 0}, {'seed': 1, 'training.num_steps': 150}]\n"))
  workdir = tmp_path / 'sweep'
  short, long = workdir / 'seed=0', workdir / 'seed=1,num_steps=150'
  command = [sys.executable, os.path.join(REPO, 'launch.py'), *TINY_DDPM, f'--sweep={sweep_file}',
             f'--workdir={workdir}', '--config.training.num_steps=4',
             '--config.training.checkpoint_every=1000', '--config.sweep.parallel=1']
  env = fast_env(1, compile_cache)
  sweep = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while not (os.path.isdir(short / 'checkpoints' / '4') and (long / 'metrics.jsonl').exists()
             and (long / 'metrics.jsonl').read_text().count('\n') >= 2):
    assert sweep.poll() is None and time.time() < deadline, sweep.communicate()
    time.sleep(0.05)
  sweep.send_signal(signal.SIGTERM)  # a killed sweep: its running trial checkpoints and exits
  out, err = sweep.communicate(timeout=120)
  assert sweep.returncode == 1, err
  status = {row['trial']: row for row in json.load(open(workdir / 'sweep.json'))['trials']}
  assert status['seed=0']['status'] == 'done'
  assert status['seed=1,num_steps=150']['status'] == 'interrupted', out
  stopped_at = max(int(d) for d in os.listdir(long / 'checkpoints') if d.isdigit())
  assert 1 <= stopped_at < 150
  short_metrics = (short / 'metrics.jsonl').read_text()

  again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
  assert again.returncode == 0, again.stdout + again.stderr
  assert 'seed=0: finished earlier, skipped' in again.stdout
  assert (short / 'metrics.jsonl').read_text() == short_metrics  # not run again
  assert f'resuming at step {stopped_at} of 150' in (long / 'launch.log').read_text()
  rows = {row['trial']: row for row in json.load(open(workdir / 'sweep.json'))['trials']}
  long_row = rows[long.name]
  assert rows['seed=0']['status'] == 'skipped' and long_row['status'] == 'done'
  assert rows['seed=0']['final']['step'] == 4 and long_row['final']['step'] == 150
  assert np.isfinite(long_row['final']['train/loss'])
  table = (workdir / 'sweep.md').read_text().splitlines()
  assert table[0].startswith('| trial | overrides | status | step | train/loss |')
  assert table[2].startswith('| seed=0 | seed=0 | skipped: finished earlier | 4 | ')
  assert table[3].startswith(f'| {long.name} | seed=1, training.num_steps=150 | done | 150 | ')
  assert table[3] in again.stdout  # the table is printed too


def test_skypilot_tasks(tmp_path):
  sky = pytest.importorskip('sky', reason='SkyPilot is the optional `cloud` extra: '
                                          'pip install -e ".[cloud]"')
  from gen_jax.platform.sweeps import skypilot  # pylint: disable=g-import-not-at-top
  config = ddpm.get_config()
  config.sweep.bucket = 'gs://bucket/runs'
  config.sweep.num_nodes = 2
  config.sweep.tpu_runtime = 'v2-alpha-tpuv5-lite'
  trials = spec.expand(config, [{'optim.lr': 1e-3}, {'optim.lr': 3e-3}], 'test')
  flags = {t.id: spec.trial_flags({'training.num_steps': 300, 'sweep.bucket': 'x'}, t)
           for t in trials}
  tasks = skypilot.build_tasks(trials, flags, os.path.join(REPO, 'configs/ddpm.py'), REPO,
                               'lr', config.sweep)
  (trial, task), = tasks[1:]
  assert isinstance(task, sky.Task) and trial.id == 'lr=0.003'
  assert task.name == 'lr-lr-0-003' and task.num_nodes == 2 and task.workdir == REPO
  assert task.run == ('python launch.py --config=configs/ddpm.py '
                      '--config.training.num_steps=300 --config.optim.lr=0.003 '
                      '--workdir=/gen_jax_runs/lr/lr=0.003 --preempted_exit_code=75')
  assert task.envs == {'PYTHONUNBUFFERED': '1'}
  assert task.setup == 'pip install -e ".[tpu]"'
  resources, = task.resources
  assert resources.accelerators == {'tpu-v5e-8': 1} and resources.use_spot
  assert resources.accelerator_args['runtime_version'] == 'v2-alpha-tpuv5-lite'
  assert resources.job_recovery['recover_on_exit_codes'] == [75]
  storage = task.storage_mounts['/gen_jax_runs']
  assert storage.source == 'gs://bucket/runs' and storage.mode == sky.StorageMode.MOUNT
  # A GPU cluster instead: the [gpu] extra.
  config.sweep.accelerators, config.sweep.tpu_runtime = 'A100:8', ''
  (_, gpu_task), _ = skypilot.build_tasks(trials, flags, os.path.join(REPO, 'configs/ddpm.py'),
                                          REPO, 'lr', config.sweep)
  assert gpu_task.setup == 'pip install -e ".[gpu]"'
  assert list(gpu_task.resources)[0].accelerators == {'A100': 8}
  # The command line prints the same tasks as YAML, contacting nothing.
  proc = launch(['--config=configs/ddpm.py', '--sweep=sweeps/ddpm_lr.py', '--workdir=runs/lr',
                 '--backend=skypilot', '--dry_run', '--config.sweep.bucket=gs://b/r'],
                launch_env(1), timeout=120)
  assert proc.returncode == 0, proc.stderr
  import yaml  # pylint: disable=g-import-not-at-top
  documents = list(yaml.safe_load_all(proc.stdout))
  assert len(documents) == 4
  assert documents[0]['resources']['accelerators'] == {'tpu-v5e-8': 1}
  assert documents[0]['run'].endswith('--workdir=/gen_jax_runs/lr/lr=0.0003 '
                                      '--preempted_exit_code=75')


def test_skypilot_needs_a_bucket():
  pytest.importorskip('sky', reason='SkyPilot is the optional `cloud` extra')
  from gen_jax.platform.sweeps import skypilot  # pylint: disable=g-import-not-at-top
  config = ddpm.get_config()
  trials = spec.expand(config, [{'seed': 1}], 'test')
  with pytest.raises(UserError, match='needs --config.sweep.bucket'):
    skypilot.build_tasks(trials, {'seed=1': []}, os.path.join(REPO, 'configs/ddpm.py'), REPO,
                         'x', config.sweep)


def test_skypilot_nodes_join_one_jax_job():
  env = {'SKYPILOT_NUM_NODES': '2', 'SKYPILOT_NODE_RANK': '1',
         'SKYPILOT_NODE_IPS': '10.0.0.5\n10.0.0.6\n'}
  assert runner.skypilot_processes(env) == ('10.0.0.5:8476', 2, 1)
  assert runner.skypilot_processes({'SKYPILOT_NUM_NODES': '1'}) is None
  assert runner.skypilot_processes({}) is None


def test_summary_shows_each_familys_losses(tmp_path):
  """A GAN trial logs train/d_loss and train/g_loss (no train/loss): both get a column,
  with the mean of their last SMOOTHING logs."""
  from gen_jax.platform.sweeps import summary  # pylint: disable=g-import-not-at-top
  run = tmp_path / 'gan_trial'
  run.mkdir()
  d_losses = [1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.9]
  with open(run / 'metrics.jsonl', 'w') as f:
    for step, d in enumerate(d_losses):
      f.write(json.dumps({'step': step * 10, 'train/d_loss': d, 'train/g_loss': 2 * d}) + '\n')
    f.write(json.dumps({'step': 60, 'eval/fid': 3.5}) + '\n')
  final = summary.final_metrics(str(run))
  last5 = d_losses[-summary.SMOOTHING:]
  assert final['train/d_loss, last 5 logs'] == pytest.approx(sum(last5) / 5)
  assert final['train/g_loss, last 5 logs'] == pytest.approx(2 * sum(last5) / 5)
  table = summary.write(str(tmp_path), [{'trial': 't', 'overrides': {'seed': 1},
                                         'status': 'done', 'final': final}]).splitlines()
  assert table[0] == ('| trial | overrides | status | step | train/d_loss | train/d_loss, last 5 '
                      'logs | train/g_loss | train/g_loss, last 5 logs | eval/fid |')
  assert table[2] == '| t | seed=1 | done | 60 | 0.9 | 1.1 | 1.8 | 2.2 | 3.5 |'
