"""Multi-process runs: joining, noticing a dead peer, and a clean restartable exit.

When one host of a multi-host run dies, the others wait in a collective until JAX's
coordination service gives up on the dead task and aborts them with a page of C++ stack
trace. Here instead:

* `join` calls `jax.distributed.initialize` with JAX's heartbeat timeout set from
  `parallel.peer_timeout_s` (a backstop), and an initialization timeout that ends in one
  line when the peers are not there.
* Every process beats in the coordination service's key-value store once a second; a
  watchdog thread on each process notices a peer whose beat has not changed for
  `peer_timeout_s` (or a coordinator that no longer answers), prints one line naming the
  lost process and the last checkpoint, and ends the process at once with the
  restartable exit code, even while the main thread is stuck in a collective.
* C++ logs (gloo, the coordination service) go to WORKDIR/logs/process_<i>.log instead
  of the user's screen; Python's stderr stays on the screen.
"""

import os
import sys
import threading
import time

import jax

from gen_jax.platform.errors import UserError

LOST_PEER_EXIT_CODE = 75  # EX_TEMPFAIL: restart me (SkyPilot's recover_on_exit_codes)
_BEAT_PREFIX = 'gen_jax/beat/'
_watchdog = None


def _client():
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return distributed.global_state.client


def redirect_native_stderr(log_path: str) -> None:
  """Sends file descriptor 2 (what C++ writes to) to `log_path`; `sys.stderr` keeps
  writing to the original stderr."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  screen = os.dup(2)
  log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
  os.dup2(log, 2)
  os.close(log)
  sys.stderr = os.fdopen(screen, 'w', buffering=1)


def join(coordinator_address: str | None, num_processes: int | None, process_id: int | None,
         peer_timeout_s: float, init_timeout_s: float) -> None:
  """jax.distributed.initialize with bounded timeouts; one line when the peers are gone.

  JAX aborts the process (a C++ stack trace) when the peers do not come within its
  initialization timeout, so a timer a little shorter than it ends the process first,
  with one line and exit code 2.
  """
  message = (f'error: process {process_id} could not join the other process(es) of '
             f'{num_processes} at {coordinator_address} within '
             f'parallel.init_timeout_s={init_timeout_s:g} s: start every process with the '
             f'same command, or raise --config.parallel.init_timeout_s.\n')
  joined = threading.Event()

  def give_up():
    if not joined.wait(init_timeout_s):
      sys.stderr.write(message)
      sys.stderr.flush()
      os._exit(2)  # pylint: disable=protected-access

  threading.Thread(target=give_up, daemon=True).start()
  try:
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id, initialization_timeout=int(init_timeout_s + 10),
        heartbeat_timeout_seconds=int(2 * peer_timeout_s + 10),
        shutdown_timeout_seconds=int(2 * peer_timeout_s + 10))
  except Exception as e:  # pylint: disable=broad-except  # XlaRuntimeError, ValueError
    raise UserError(message[len('error: '):].strip() + f' ({" ".join(str(e).split())[:160]})'
                    ) from None
  finally:
    joined.set()


def check_same_config(config_json: str) -> None:
  """One-line error unless every process runs the same config (compared by hash)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  client = _client()
  if client is None or jax.process_count() == 1:
    return
  digest = hashlib.sha256(config_json.encode()).hexdigest()[:16]
  me = jax.process_index()
  client.key_value_set(f'gen_jax/config/{me}', digest, allow_overwrite=True)
  timeout_ms = 300_000
  for other in range(jax.process_count()):
    theirs = client.blocking_key_value_get(f'gen_jax/config/{other}', timeout_ms)
    if theirs != digest:
      raise UserError(
          f'process {me} runs another config than process {other} (config hashes {digest} '
          f'and {theirs}): start every process with the same --config and overrides.')


class Watchdog:
  """Beats for this process and ends it when a peer stops beating (see module doc)."""

  def __init__(self, peer_timeout_s: float, exit_code: int, last_checkpoint):
    self.peer_timeout_s = peer_timeout_s
    self.exit_code = exit_code or LOST_PEER_EXIT_CODE
    self.last_checkpoint = last_checkpoint  # () -> str
    self.me = jax.process_index()
    self.count = jax.process_count()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True, name='gen_jax-peers')
    self._thread.start()

  def _run(self) -> None:
    client = _client()
    beat = 0
    seen = {}  # process -> (last value, local time it changed)
    unreachable_since = None
    while not self._stop.wait(1.0):
      now = time.monotonic()
      try:
        beat += 1
        client.key_value_set(f'{_BEAT_PREFIX}{self.me}', str(beat), allow_overwrite=True)
        values = dict(client.key_value_dir_get(_BEAT_PREFIX))
        unreachable_since = None
      except Exception:  # pylint: disable=broad-except  # the coordinator is gone
        if self.me == 0:
          continue
        unreachable_since = unreachable_since or now
        if now - unreachable_since > self.peer_timeout_s:
          self._lost([0], 'the coordinator (process 0) no longer answers')
        continue
      for other in range(self.count):
        if other == self.me:
          continue
        value = values.get(f'{_BEAT_PREFIX}{other}')
        if value is None and other not in seen:
          seen[other] = (None, now)  # not beating yet: the clock starts now
        elif value != seen.get(other, (None,))[0]:
          seen[other] = (value, now)
      lost = [p for p, (v, t) in seen.items()
              if v != 'done' and now - t > self.peer_timeout_s]
      if lost:
        self._lost(lost, f'no heartbeat for {self.peer_timeout_s:g} s')

  def _lost(self, processes, why) -> None:
    if self._stop.is_set():
      return
    names = ', '.join(map(str, processes))
    message = (f'error: lost process {names} of {self.count} ({why}: it died, or its host '
               f'went away); {self.last_checkpoint()}. Exiting with code {self.exit_code} '
               f'so the job is restarted; rerun every process with the same command to '
               f'resume.\n')
    try:
      sys.stderr.write(message)
      sys.stderr.flush()
    finally:
      os._exit(self.exit_code)  # pylint: disable=protected-access  # main may be stuck

  def wait_for_verdict(self) -> None:
    """Called when a collective failed in the main thread: gives the watchdog time to
    name the lost peer and exit (returns if it does not)."""
    time.sleep(self.peer_timeout_s + 5)

  def stop(self, done: bool) -> None:
    """Stops watching and beating. `done`: this process finished its work, so peers stop
    watching it; otherwise (a one-line error on this process only) they notice it ended."""
    self._stop.set()
    if done:
      try:
        _client().key_value_set(f'{_BEAT_PREFIX}{self.me}', 'done', allow_overwrite=True)
      except Exception:  # pylint: disable=broad-except
        pass


def start_watchdog(peer_timeout_s: float, exit_code: int, last_checkpoint) -> Watchdog | None:
  """Starts the watchdog of a multi-process run (None for one process)."""
  global _watchdog
  if jax.process_count() == 1 or _client() is None:
    return None
  if _watchdog is None:
    _watchdog = Watchdog(peer_timeout_s, exit_code, last_checkpoint)
  return _watchdog


def current() -> Watchdog | None:
  return _watchdog


def last_checkpoint_note(workdir: str) -> str:
  """'the last checkpoint is 40 in DIR' from the directory names (orbax lists a step
  only once every process finished writing it)."""
  directory = os.path.join(workdir, 'checkpoints')
  try:
    steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
  except OSError:
    steps = []
  if not steps:
    return f'there is no checkpoint in {directory} yet'
  return f'the last checkpoint is {max(steps)} in {directory}'
