"""End-to-end runs of launch.py as a user would run it: train, resume, preemption, sample."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from tests.conftest import REPO, launch_env, losses_by_step, read_jsonl, run_launch


def test_digits_train_then_sample(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=4',
                     '--config.training.sample_every=4', '--config.sampling.sampler=ddim',
                     '--config.sampling.num_steps=5'])
  assert 'steps/s' in proc.stdout and 'ETA' in proc.stdout
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in metrics] == [1, 2, 3, 4]
  for key in ('train/loss', 'train/steps_per_s', 'train/grad_norm', 'train/lr'):
    assert all(np.isfinite(m[key]) for m in metrics), key
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '4'))
  png = os.path.join(workdir, 'samples', 'train_step0000004_ddim5_eta0.png')
  assert Image.open(png).size[0] >= 256
  # --mode=sample: the latest checkpoint's EMA parameters, num_samples images in [-1, 1].
  run_launch([*tiny_ddpm, f'--workdir={workdir}', '--mode=sample'])
  # The digits default: DPM-Solver++(2M), 20 steps (T = 20 here).
  name = os.path.join(workdir, 'samples', 'sample_step0000004_dpmpp_2m20_nfe20')
  arrays = np.load(name + '.npz')
  assert arrays['images'].shape == (8, 8, 8, 1)
  assert arrays['images'].min() >= -1 and arrays['images'].max() <= 1
  assert os.path.exists(name + '.png')


def test_resumed_run_logs_exactly_the_uninterrupted_losses(tmp_path, tiny_ddpm):
  common = [*tiny_ddpm, '--config.training.checkpoint_every=10',
            '--config.model.dropout=0.1']  # dropout on: its keys must resume too
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  run_launch([*common, f'--workdir={straight}', '--config.training.num_steps=20'])
  run_launch([*common, f'--workdir={resumed}', '--config.training.num_steps=10'])
  proc = run_launch([*common, f'--workdir={resumed}', '--config.training.num_steps=20'])
  assert 'resuming at step 10' in proc.stdout
  want, got = losses_by_step(straight), losses_by_step(resumed)
  assert sorted(got) == list(range(1, 21))
  for step in range(11, 21):
    assert got[step] == want[step], step  # bitwise: same batches, same keys


def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  proc = subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'launch.py'), *tiny_ddpm, f'--workdir={workdir}',
       '--config.training.num_steps=100000', '--config.training.checkpoint_every=100000'],
      cwd=REPO, env=launch_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 240
  while time.time() < deadline and not (os.path.exists(metrics) and
                                        len(read_jsonl(metrics)) >= 3):
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err
  assert 'SIGTERM: saved checkpoint' in out
  saved = [int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()]
  assert saved and max(saved) >= 3
  # And the run resumes from it.
  again = run_launch([*tiny_ddpm, f'--workdir={workdir}',
                      f'--config.training.num_steps={max(saved) + 2}'])
  assert f'resuming at step {max(saved)}' in again.stdout


def test_tfds_mock_mnist_smoke(tmp_path):
  """A tfds dataset through tensorflow-datasets, with tfds.testing.mock_data (no network)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from configs import ddpm
  from experiments import programs
  config = ddpm.get_config()
  config.data.dataset = 'mnist'
  config.data.image_size = 8
  config.model.ch, config.model.ch_mult, config.model.num_groups = 8, (1, 2), 4
  config.model.attn_resolutions = ()
  config.diffusion.num_timesteps = 10
  config.sampling.sampler = 'ddpm'  # all T = 10 steps (the digits default's 20 DPM-Solver++
                                    # steps would exceed T)
  config.training.batch_size = 8
  config.training.num_steps = 2
  config.training.log_every = 1
  config.training.sample_every = 2
  config.sampling.num_samples = 8
  workdir = str(tmp_path / 'mnist')
  with tfds.testing.mock_data(num_examples=32):
    assert programs.run(config, workdir) == 'done'
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in metrics] == [1, 2]
  samples = np.load(os.path.join(workdir, 'samples', 'train_step0000002_ddpm10.npz'))
  assert samples['images'].shape == (8, 8, 8, 1)
