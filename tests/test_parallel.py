"""Data parallelism: 8 devices and 2 processes train exactly like 1 device."""

import os
import socket
import subprocess
import sys

import numpy as np

from tests.conftest import REPO, launch_env, losses_by_step, run_launch

STEPS = 6


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_eight_devices_match_one_device(tmp_path, tiny_ddpm):
  runs = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f'd{devices}')
    run_launch([*tiny_ddpm, f'--workdir={workdir}', f'--config.training.num_steps={STEPS}'],
               devices=devices)
    runs[devices] = losses_by_step(workdir)
  assert sorted(runs[1]) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([runs[8][s] for s in runs[1]], list(runs[1].values()),
                             rtol=2e-5)


def test_two_processes_match_one(tmp_path, tiny_ddpm):
  single = str(tmp_path / 'single')
  run_launch([*tiny_ddpm, f'--workdir={single}', f'--config.training.num_steps={STEPS}'],
             devices=2)
  multi = str(tmp_path / 'multi')
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'launch.py'), *tiny_ddpm, f'--workdir={multi}',
       f'--config.training.num_steps={STEPS}', f'--coordinator_address=127.0.0.1:{port}',
       '--num_processes=2', f'--process_id={i}'],
      cwd=REPO, env=launch_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert '2 device(s) on 2 process(es)' in outs[0][0]
  # Its processes compile: with jax 0.12 they hang on programs read from the cache.
  assert 'compilation cache: off for this multi-process CPU run' in outs[0][0]
  want, got = losses_by_step(single), losses_by_step(multi)
  assert sorted(got) == list(range(1, STEPS + 1))
  np.testing.assert_allclose([got[s] for s in want], list(want.values()), rtol=2e-5)
