"""When one host of a multi-host run dies or is preempted: two CPU processes on
127.0.0.1, joined with jax.distributed and gloo collectives."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, assert_one_line_error, launch_env, losses_by_step, read_jsonl

PEER_TIMEOUT = 6


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start(args, port, process_ids=(0, 1), per_process=None):
  per_process = per_process or {}
  return [subprocess.Popen(
      [sys.executable, os.path.join(REPO, 'launch.py'), *args, *per_process.get(i, []),
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=REPO, env=launch_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in process_ids]


def _finish(proc, timeout=240):
  out, err = proc.communicate(timeout=timeout)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _wait_for_step(procs, workdir, step):
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 900  # compiling two processes on a loaded 2-core machine
  while time.time() < deadline:
    if os.path.exists(path) and any(m.get('step', 0) >= step for m in read_jsonl(path)):
      return
    for p in procs:
      assert p.poll() is None, p.communicate()
    time.sleep(0.2)
  raise AssertionError('no progress')


def test_a_dead_peer_stops_the_other_with_one_line_and_the_run_resumes_exactly(
    tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  args = [*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=100000',
          '--config.training.checkpoint_every=2',
          f'--config.parallel.peer_timeout_s={PEER_TIMEOUT}',
          '--preempted_exit_code=75']
  procs = _start(args, _free_port())
  _wait_for_step(procs, workdir, 3)
  procs[1].kill()  # kill -9: a host that died
  killed = time.time()
  survivor = _finish(procs[0], timeout=120)
  waited = time.time() - killed
  procs[1].communicate()
  err = survivor.stderr
  assert survivor.returncode == 75, err
  assert_one_line_error(survivor, 'lost process 1 of 2', 'last checkpoint is', 'code 75')
  assert waited < PEER_TIMEOUT + 20, waited
  for native in ('coordination_service', 'Gloo', 'stack trace', '*** '):
    assert native not in err, err  # C++ logs went to WORKDIR/logs
  assert os.listdir(os.path.join(workdir, 'logs'))
  before = losses_by_step(workdir)  # the uninterrupted run, up to the kill
  saved = max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert saved >= 2 and max(before) >= saved + 1

  # Rerun both: it resumes from the last complete checkpoint and logs the same losses.
  # Then SIGTERM to process 1 alone: both save one checkpoint, at one step, and exit.
  procs = _start(args, _free_port())
  _wait_for_step(procs, workdir, max(before) + 1)
  procs[1].send_signal(signal.SIGTERM)
  outs = [p.communicate(timeout=120) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 75, err
    assert 'Traceback' not in err, err
  assert f'resuming at step {saved}' in outs[0][0]
  after = losses_by_step(workdir)
  redone = [s for s in before if s > saved]
  np.testing.assert_allclose([after[s] for s in redone], [before[s] for s in redone], rtol=1e-6)
  assert 'stop request on another process: saved checkpoint' in outs[0][0], outs[0][0]
  stopped = int(outs[0][0].split('saved checkpoint ')[1].split()[0])
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', str(stopped)))
  assert stopped > max(before)
  last_logged = max(losses_by_step(workdir))
  assert last_logged <= stopped  # nothing trained past the agreed step


def test_a_process_with_another_config_is_refused(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  procs = _start([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=2'],
                 _free_port(), per_process={1: ['--config.optim.lr=0.5']})
  for p in procs:
    assert_one_line_error(_finish(p), 'runs another config than process', 'same --config')
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))


def test_a_process_whose_peers_never_come_is_refused(tmp_path, tiny_ddpm):
  procs = _start([*tiny_ddpm, f'--workdir={tmp_path}/run', '--config.parallel.init_timeout_s=3'],
                 _free_port(), process_ids=(1,))
  assert_one_line_error(_finish(procs[0]), 'could not join', 'parallel.init_timeout_s=3')


_SAVE_THEN_DIE = '''
import os, sys, time
import jax, numpy as np
pid, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.config.update('jax_cpu_collectives_implementation', 'gloo')
jax.distributed.initialize(f'127.0.0.1:{port}', 2, pid, heartbeat_timeout_seconds=5)
from gen_jax.core import parallel
from gen_jax.platform import checkpoint
state = parallel.replicate({'w': np.arange(100000.0, dtype=np.float32)}, parallel.make_mesh())
ckpt = checkpoint.Checkpointer(workdir, async_save=True)
ckpt.save(1, state)
ckpt.wait()
if pid == 1:
  # This host dies as checkpoint 2 starts: before its part of the save, so the test does
  # not race its own background write (under load that write could finish, and the step
  # commit with it, before the exit).
  os._exit(9)
ckpt.save(2, state)  # host 0 writes its part; the step can never be committed
time.sleep(15)
os._exit(0)
'''


def test_a_host_that_dies_during_a_save_leaves_no_listed_checkpoint(tmp_path):
  from gen_jax.platform import checkpoint  # pylint: disable=g-import-not-at-top
  port, workdir = _free_port(), str(tmp_path / 'run')
  procs = [subprocess.Popen([sys.executable, '-c', _SAVE_THEN_DIE, str(i), str(port), workdir],
                            cwd=REPO, env=launch_env(1), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL) for i in (0, 1)]
  for p in procs:
    p.wait(timeout=240)
  # Checkpoint 2 never became a step (orbax renames it into place only once every host
  # finished), so every host restores checkpoint 1.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')))[0] == '1'
  assert checkpoint.Checkpointer(workdir, async_save=False).all_steps() == [1]


@pytest.mark.parametrize('error,waits', [('save', True), ('other', False)])
def test_a_failed_save_lets_the_watchdog_name_a_dead_peer_first(tmp_path, monkeypatch, error,
                                                                 waits):
  """A peer killed during a save breaks the save's collective on the survivor: the runner
  must give the watchdog its verdict (the lost-process line, exit 75) before reporting a
  failed save, which would blame the disk. Other one-line errors do not wait."""
  from configs import ddpm
  from gen_jax.platform import checkpoint
  from gen_jax.platform import peers
  from gen_jax.platform import preemption
  from gen_jax.platform import runner
  from gen_jax.platform.errors import UserError

  calls = []

  class FakeWatchdog:

    def wait_for_verdict(self):
      calls.append('verdict')

    def stop(self, done):
      calls.append(('stop', done))

  monkeypatch.setattr(runner, 'setup_devices', lambda *args, **kwargs: None)
  monkeypatch.setattr(preemption, 'reinstall', lambda: None)
  monkeypatch.setattr(runner.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(peers, 'check_same_config', lambda config_json: None)
  monkeypatch.setattr(peers, 'start_watchdog', lambda *args: FakeWatchdog())
  raised = (checkpoint.SaveFailed('saving checkpoint 4 failed: Gloo AllGather failed')
            if error == 'save' else UserError('model.ch must be >= 4'))

  with pytest.raises(UserError) as caught:
    with runner.session(ddpm.get_config(), str(tmp_path), 'train'):
      raise raised
  assert caught.value is raised
  assert calls == (['verdict'] if waits else []) + [('stop', False)]
