"""What clusters do to runs: two jobs on one workdir, damaged checkpoints,
cut-off logs, changed configs, NaNs, Ctrl-C, SIGTERM at awkward moments, full disks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.core import parallel
from gen_jax.platform import checkpoint
from gen_jax.platform import metric_log
from gen_jax.platform import preemption
from gen_jax.platform import run_config
from gen_jax.platform import workdir_lock
from gen_jax.platform.errors import UserError
from tests.conftest import (REPO, assert_one_line_error, launch_env, losses_by_step, read_jsonl,
                            run_launch)

# --- the workdir lock ---------------------------------------------------------------------

_HOLD = '''
import sys, time
from gen_jax.platform import workdir_lock
lock = workdir_lock.WorkdirLock(sys.argv[1])
print('locked', flush=True)
time.sleep(120)
'''


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, '-c', _HOLD, workdir], env=launch_env(), cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_a_second_process_on_a_locked_workdir_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path):
  workdir = str(tmp_path / 'run')
  holder = _holder(workdir)
  try:
    with pytest.raises(UserError, match=f'in use by process {holder.pid} on host'):
      workdir_lock.WorkdirLock(workdir)
  finally:
    holder.kill()  # kill -9: the kernel releases the flock, the file stays
    holder.wait()
  assert json.load(open(os.path.join(workdir, '.lock')))['pid'] == holder.pid
  lock = workdir_lock.WorkdirLock(workdir)
  assert lock.took_over['pid'] == holder.pid
  assert json.load(open(os.path.join(workdir, '.lock')))['pid'] == os.getpid()
  lock.release()


def test_launch_refuses_a_workdir_another_run_holds(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  holder = _holder(workdir)
  try:
    proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=1'],
                      check=False)
  finally:
    holder.kill()
    holder.wait()
  assert_one_line_error(proc, 'is in use by process', str(holder.pid), 'another --workdir')
  assert not os.path.exists(os.path.join(workdir, 'config.json'))


# --- damaged checkpoints and logs ---------------------------------------------------------

_ABSTRACT = {'w': jax.ShapeDtypeStruct((1000,), jnp.float32),
             'step': jax.ShapeDtypeStruct((), jnp.int32)}


def _two_checkpoints(workdir):
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  for step in (1, 2):
    ckpt.save(step, {'w': jnp.arange(1000.0) * step, 'step': jnp.array(step)})
  ckpt.close()
  return os.path.join(workdir, 'checkpoints', '2')


def _truncate_largest(directory):
  files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
  with open(max(files, key=os.path.getsize), 'r+b') as f:
    f.truncate(100)


@pytest.mark.parametrize('damage,why', [
    (lambda d: _truncate_largest(os.path.join(d, 'default')), 'do not read'),
    (lambda d: shutil.rmtree(os.path.join(d, 'default')), 'default/ (the state) is missing'),
    (lambda d: os.remove(os.path.join(d, 'default', '_METADATA')), '_METADATA is missing'),
])
def test_restore_walks_back_over_a_damaged_checkpoint_and_sets_it_aside(tmp_path, damage, why):
  newest = _two_checkpoints(str(tmp_path))
  damage(newest)
  notes = []
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  restored = ckpt.restore_newest_intact(_ABSTRACT, set_aside=True, say=notes.append)
  assert int(restored['step']) == 1 and float(restored['w'][1]) == 1.0
  assert len(notes) == 1 and 'checkpoint 2' in notes[0] and why in notes[0], notes
  assert ckpt.latest_step() == 1  # the damaged one is no longer listed ...
  ckpt.close()
  aside = [d for d in os.listdir(tmp_path / 'checkpoints') if d.startswith('2.damaged-')]
  assert len(aside) == 1 and not os.path.exists(newest)  # ... but kept, renamed
  assert f'set aside as {aside[0]}' in notes[0]


def test_restore_without_set_aside_leaves_the_damaged_checkpoint_in_place(tmp_path):
  newest = _two_checkpoints(str(tmp_path))
  shutil.rmtree(os.path.join(newest, 'default'))
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  assert int(ckpt.restore_newest_intact(_ABSTRACT, say=lambda m: None)['step']) == 1
  ckpt.close()
  assert os.path.isdir(newest)


def test_metrics_are_cut_back_to_the_restored_step_past_a_cut_off_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1, "train/loss": 0.5}\n{"step": 2, "train/loss": 0.4}\n'
                  '{"step": 3, "train/loss": 0.3}\n{"step": 4, "train/lo')  # disk full
  assert [m['step'] for m in metric_log.read_metrics(str(tmp_path))] == [1, 2, 3]
  logger = metric_log.MetricLogger(str(tmp_path))
  logger.truncate_after(2)
  logger.write(3, {'train/loss': 0.25})
  logger.close()
  assert read_jsonl(path) == [{'step': 1, 'train/loss': 0.5}, {'step': 2, 'train/loss': 0.4},
                              {'step': 3, 'train/loss': 0.25}]


def test_tensorboard_sees_each_write_before_the_logger_closes(tmp_path):
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  logger = metric_log.MetricLogger(str(tmp_path))
  logger.write(7, {'train/loss': 0.25})  # not closed: a live TensorBoard, or a killed run
  (events,) = (tmp_path / 'tensorboard').iterdir()
  values = [(e.step, v.tag, v.simple_value)
            for e in map(event_pb2.Event.FromString,
                         event_file_loader.RawEventFileLoader(str(events)).Load())
            for v in e.summary.value]
  logger.close()
  assert values == [(7, 'train/loss', 0.25)]


# --- config changes under a resume --------------------------------------------------------


def _config(**training):
  return ml_collections.ConfigDict({
      'family': 'diffusion', 'seed': 0, 'model': {'ch': 8, 'ch_mult': (1, 2)},
      'optim': {'lr': 2e-4, 'warmup_steps': 2, 'grad_clip': 1.0},
      'training': {'num_steps': 10, 'log_every': 1, 'batch_size': 16, **training}})


def test_resume_allows_cadence_and_optimizer_changes_and_records_them(tmp_path):
  run_config.write(_config(), str(tmp_path), 0, {})
  new = _config(num_steps=20)
  new.optim.lr = 1e-4
  changed = run_config.changes(new, str(tmp_path))
  assert changed == {'optim.lr': (2e-4, 1e-4), 'training.num_steps': (10, 20)}
  run_config.write(new, str(tmp_path), 10, changed)
  history = read_jsonl(tmp_path / 'config_history.jsonl')
  assert history[0]['step'] == 10
  assert history[0]['changes'] == {'optim.lr': [2e-4, 1e-4], 'training.num_steps': [10, 20]}
  assert run_config.read(str(tmp_path))['training']['num_steps'] == 20


def test_resume_refuses_model_seed_and_batch_changes_and_leaves_config_json(tmp_path):
  run_config.write(_config(), str(tmp_path), 0, {})
  before = (tmp_path / 'config.json').read_text()
  new = _config(batch_size=32, num_steps=20)
  new.seed, new.model.ch_mult = 1, (1, 2, 2)
  with pytest.raises(UserError) as e:
    run_config.changes(new, str(tmp_path))
  message = str(e.value)
  for needle in ('model.ch_mult [1, 2] -> [1, 2, 2]', 'seed 0 -> 1',
                 'training.batch_size 16 -> 32', 'new --workdir'):
    assert needle in message, message
  assert 'num_steps' not in message  # allowed, so not listed
  assert (tmp_path / 'config.json').read_text() == before


def test_launch_refuses_a_changed_model_and_keeps_config_json(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=1'], timeout=900)
  before = open(os.path.join(workdir, 'config.json')).read()
  proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=2',
                     '--config.diffusion.prediction=v', '--config.seed=3'], check=False,
                    timeout=900)
  assert_one_line_error(proc, 'diffusion.prediction', "'eps' -> 'v'", 'seed 0 -> 3')
  assert open(os.path.join(workdir, 'config.json')).read() == before
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '1'))


# --- save errors and disk space -----------------------------------------------------------


def test_a_save_that_would_not_fit_on_disk_is_refused_before_it_starts(tmp_path, monkeypatch):
  _two_checkpoints(str(tmp_path))
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  usage = shutil.disk_usage(str(tmp_path))
  monkeypatch.setattr(checkpoint.shutil, 'disk_usage',
                      lambda p: usage._replace(free=ckpt.step_size(2) // 2))
  with pytest.raises(UserError, match='not enough disk space to save checkpoint 3.*'
                     'checkpoint 2 is kept'):
    ckpt.check_space(3)
  ckpt.close()


def test_a_failed_background_save_surfaces_as_one_line(tmp_path, monkeypatch):
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=True)
  ckpt.save(1, {'w': jnp.zeros(3)})
  ckpt.wait()

  def fail():
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(ckpt._manager, 'check_for_errors', fail)  # pylint: disable=protected-access
  with pytest.raises(UserError, match='failed: .*No space left on device.*checkpoint 1 is kept'):
    ckpt.check_errors()
  monkeypatch.undo()
  ckpt.close()


# --- signals ------------------------------------------------------------------------------


def test_a_stop_request_ends_the_wait_for_a_long_computation(tmp_path):
  # Seconds of work even on a fast core (about 9 s here), so the signal lands during the
  # wait. The array is large because XLA:CPU runs small computations inline, in the call,
  # rather than dispatching them. It is compiled before the timer starts: a signal during
  # compilation would only be seen once the wait begins.
  slow = jax.jit(lambda x: jax.lax.fori_loop(0, 6000, lambda i, v: jnp.sin(v) + 1e-3, x))
  ones = jnp.ones((1024, 1024))  # (1024, 1024)
  compiled = slow.lower(ones).compile()
  timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
  try:
    with preemption.Signals() as signals:
      timer.start()
      result = compiled(ones)
      with pytest.raises(preemption.Interrupted, match='SIGTERM'):
        parallel.global_to_host(result)
      # The wait ended while the computation still ran: it did not wait it out. No
      # wall-clock bound, which a loaded machine breaks.
      assert not result.is_ready()
      assert signals.requested == 'SIGTERM'
  finally:
    timer.cancel()  # never a SIGTERM outside the handler: it would end the test session
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
      signal.getsignal(signal.SIGTERM))


def _popen(args, devices=1):
  return subprocess.Popen([sys.executable, os.path.join(REPO, 'launch.py'), *args], cwd=REPO,
                          env=launch_env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _wait_for_metrics(proc, workdir, lines):
  path = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 900  # a first compilation on a loaded machine
  while not (os.path.exists(path) and len(read_jsonl(path)) >= lines):
    assert proc.poll() is None, proc.communicate()
    assert time.time() < deadline, 'no progress'
    time.sleep(0.2)


def test_ctrl_c_saves_a_checkpoint_then_the_run_resumes(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  proc = _popen([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=100000',
                 '--config.training.checkpoint_every=100000'])
  _wait_for_metrics(proc, workdir, 2)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err
  assert 'Traceback' not in err and 'KeyboardInterrupt' not in err, err
  assert 'Ctrl-C: saved checkpoint' in out, out
  saved = [int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit()]
  assert saved and max(saved) >= 2


def test_sigterm_before_the_first_step_exits_with_a_message(tmp_path, tiny_ddpm):
  workdir = str(tmp_path / 'run')
  proc = _popen([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=5'])
  deadline = time.time() + 600  # the lock is taken early, before compilation
  while time.time() < deadline and not os.path.exists(os.path.join(workdir, '.lock')):
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=600)
  assert proc.returncode == 0, err
  assert 'SIGTERM' in out and 'exiting' in out, (out, err)
  assert 'step 1/5' not in out  # no step was taken
  assert 'Traceback' not in err, err
