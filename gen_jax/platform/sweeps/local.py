"""The local backend: each trial is a `launch.py` subprocess, `sweep.parallel` at a time.

A trial's output goes to WORKDIR/<trial>/launch.log; the sweep prints one line as each
trial starts and ends. A trial whose latest checkpoint is at its `training.num_steps`
is finished and skipped when the sweep runs again; any other resumes from its own
checkpoints, like any run. A failed trial is reported and the others go on. SIGTERM or
Ctrl-C stops the sweep: running trials get SIGTERM (they checkpoint and exit), and the
summary says which trials to rerun (the same command continues them).
"""

import os
import shlex
import signal
import subprocess
import sys
import time

from gen_jax.platform.errors import UserError
from gen_jax.platform.sweeps import spec
from gen_jax.platform.sweeps import summary

LOG_NAME = 'launch.log'
_POLL_SECONDS = 0.5


def finished_step(workdir: str) -> int | None:
  """The latest complete checkpoint of a run, from directory names only (no JAX: the
  sweep process must not take the accelerators its trials need). Orbax writes a step
  to a temporary name and renames it to the bare number when it is complete."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return None
  steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
  return max(steps) if steps else None


def is_finished(trial: spec.Trial, workdir: str) -> bool:
  step = finished_step(workdir)
  return step is not None and step >= trial.config.training.num_steps


def _die_with_parent() -> None:
  """In a trial process: SIGTERM when the sweep process dies, even by SIGKILL, so no
  trial trains on unattended (and a rerun never meets a live trial in its workdir)."""
  if sys.platform.startswith('linux'):
    import ctypes  # pylint: disable=g-import-not-at-top
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _last_error(log_path: str) -> str:
  """The trial's 'error: ...' line, else its last line (a crash's exception)."""
  try:
    with open(log_path, errors='replace') as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError:
    return ''
  errors = [line for line in lines if line.startswith('error:')]
  return (errors or lines or [''])[-1][:300]


class _Stop:
  """SIGTERM / SIGINT to the sweep -> a flag (the loop stops its trials cleanly)."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def run(trials: list, commands: dict, workdir: str, parallel: int) -> list[dict]:
  """Runs the trials; returns one outcome per trial, in order.

  Args:
    trials: the sweep's trials.
    commands: trial id -> argv of its launch.py run.
    workdir: the sweep's directory (trial k runs in workdir/<id>).
    parallel: trials running at once.
  Returns:
    [{'trial', 'status', 'message', 'returncode', 'seconds'}]; status is 'done',
    'skipped' (finished by an earlier run of the sweep), 'failed', 'interrupted'
    (stopped mid-way; rerun to continue) or 'not started'.
  """
  outcomes = {}
  pending = []
  for trial in trials:
    if is_finished(trial, os.path.join(workdir, trial.id)):
      outcomes[trial.id] = {'status': 'skipped', 'message': 'finished earlier'}
      print(f'[sweep] {trial.id}: finished earlier, skipped', flush=True)
    else:
      pending.append(trial)
  running = {}  # id -> (trial, Popen, log file, start time)
  with _Stop() as stop:
    while pending or running:
      while pending and len(running) < max(parallel, 1) and not stop.requested:
        trial = pending.pop(0)
        trial_dir = os.path.join(workdir, trial.id)
        os.makedirs(trial_dir, exist_ok=True)
        log = open(os.path.join(trial_dir, LOG_NAME), 'a')  # pylint: disable=consider-using-with
        log.write(f'\n# {time.strftime("%Y-%m-%d %H:%M:%S")}: {shlex.join(commands[trial.id])}\n')
        log.flush()
        # Its own session: a Ctrl-C at the terminal reaches the sweep only, which then
        # stops each trial with SIGTERM (a checkpoint) rather than a KeyboardInterrupt.
        proc = subprocess.Popen(commands[trial.id], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)
        running[trial.id] = (trial, proc, log, time.time())
        print(f'[sweep] {trial.id}: started (log: {log.name})', flush=True)
      if stop.requested:
        for _, proc, _, _ in running.values():
          if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        for trial in pending:
          outcomes[trial.id] = {'status': 'not started', 'message': 'the sweep was stopped'}
        pending = []
      for trial_id in list(running):
        trial, proc, log, started = running[trial_id]
        if proc.poll() is None:
          continue
        log.close()
        del running[trial_id]
        seconds = time.time() - started
        trial_dir = os.path.join(workdir, trial.id)
        # (A trial the sweep stopped just after its last checkpoint is finished too.)
        if is_finished(trial, trial_dir) and (proc.returncode == 0 or stop.requested):
          outcome = {'status': 'done', 'message': ''}
        elif proc.returncode == 0 or stop.requested:
          outcome = {'status': 'interrupted',
                     'message': f'stopped at step {finished_step(trial_dir) or 0}; rerun '
                                f'the sweep to continue'}
        else:
          outcome = {'status': 'failed',
                     'message': f'exit {proc.returncode}: {_last_error(log.name)}'}
        outcome.update(returncode=proc.returncode, seconds=round(seconds, 1))
        outcomes[trial.id] = outcome
        print(f'[sweep] {trial.id}: {outcome["status"]} after {seconds:.0f} s'
              + (f' ({outcome["message"]})' if outcome['message'] else ''), flush=True)
      if running:
        time.sleep(_POLL_SECONDS)
  return [{'trial': trial.id, **outcomes[trial.id]} for trial in trials]


def launch_sweep(trials: list, flags: dict, config, config_file: str, launch_script: str,
                 workdir: str, dry_run: bool) -> int:
  """Runs the trials here and writes the summary; returns the sweep's exit code.

  Args:
    trials: the sweep's trials.
    flags: trial id -> its `--config.k=v` flags.
    config: the sweep command's config (its `sweep` block).
    config_file, launch_script: the trials' --config and launch.py.
    workdir: the sweep's directory (absolute).
    dry_run: print the trials' commands instead.
  Returns:
    0 when every trial is finished, else 1.
  """
  commands = {trial.id: [sys.executable, launch_script, f'--config={config_file}',
                         *flags[trial.id], f'--workdir={os.path.join(workdir, trial.id)}']
              for trial in trials}
  if dry_run:
    for trial in trials:
      print(shlex.join(commands[trial.id]), flush=True)
    return 0
  if config.sweep.parallel < 1:
    raise UserError(f'sweep.parallel must be >= 1, not {config.sweep.parallel}.')
  print(f'[sweep] {len(trials)} trial(s), {config.sweep.parallel} at a time; workdirs under '
        f'{workdir}', flush=True)
  outcomes = run(trials, commands, workdir, config.sweep.parallel)
  rows = [{**outcome, 'overrides': trial.overrides, 'workdir': os.path.join(workdir, trial.id),
           'command': commands[trial.id],
           'final': summary.final_metrics(os.path.join(workdir, trial.id))}
          for trial, outcome in zip(trials, outcomes)]
  print(summary.write(workdir, rows), end='', flush=True)
  counts = {}
  for row in rows:
    counts[row['status']] = counts.get(row['status'], 0) + 1
  print(f'[sweep] {", ".join(f"{n} {status}" for status, n in counts.items())}; summary in '
        f'{os.path.join(workdir, "sweep.md")} and sweep.json', flush=True)
  return 0 if all(row['status'] in ('done', 'skipped') for row in rows) else 1
