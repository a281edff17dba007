"""SIGTERM and Ctrl-C as a request to stop: the train loop saves a checkpoint and exits.

SIGTERM (how clouds and schedulers announce preemption) and SIGINT (Ctrl-C) set a flag;
the train loop agrees on it across processes inside the next step and saves there. A
second Ctrl-C aborts at once, without saving: a watcher thread sees it through the
signal wakeup fd even while the main thread waits in XLA.

Long waits of a single-process run (a sample grid, an evaluation) go through
`wait_ready`, which raises `Interrupted` as soon as a stop is requested, so a preempted
run never spends its grace period drawing samples.
"""

import os
import signal
import sys
import threading
import time

import jax

_NAMES = {signal.SIGTERM: 'SIGTERM', signal.SIGINT: 'Ctrl-C'}
_active = None  # the installed Signals, if any


class Interrupted(Exception):
  """A stop was requested while waiting for a computation (single process)."""


class Signals:
  """Installs the SIGTERM / SIGINT handlers for the duration of a `with` block.

  Nested blocks share the outer one's flag.
  """

  def __init__(self):
    self.requested = None  # 'SIGTERM' or 'Ctrl-C' once one arrived
    self._previous = {}
    self._outer = None
    self._pipe = None

  def __enter__(self):
    global _active
    if _active is not None:
      self._outer = _active
      return _active
    try:
      for signum in _NAMES:
        self._previous[signum] = signal.signal(signum, self._handle)
    except ValueError:  # not the main thread (some test runners): no handlers
      self._previous = {}
      return self
    read, write = os.pipe()
    os.set_blocking(write, False)
    self._pipe = (read, write, signal.set_wakeup_fd(write, warn_on_full_buffer=False))
    threading.Thread(target=self._watch, args=(read,), daemon=True).start()
    _active = self
    return self

  def _handle(self, signum, frame):
    del frame
    if self.requested is None:
      self.requested = _NAMES.get(signum, str(signum))
      print(f'{self.requested}: stopping at the next step with a checkpoint '
            f'(a second Ctrl-C aborts without saving).', file=sys.stderr, flush=True)

  def _watch(self, read_fd: int) -> None:
    """Counts SIGINTs as they arrive; the second one ends the process at once."""
    interrupts = 0
    while True:
      try:
        data = os.read(read_fd, 64)
      except OSError:
        return
      if not data:
        os.close(read_fd)
        return
      interrupts += data.count(bytes([signal.SIGINT]))
      if interrupts >= 2:
        os.write(2, b'error: second Ctrl-C: aborted without saving; the last checkpoint '
                 b'is kept (rerun the same command to resume from it).\n')
        os._exit(130)  # pylint: disable=protected-access

  def __exit__(self, *exc):
    global _active
    if self._outer is not None:
      return
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    if self._pipe is not None:
      _, write, previous_fd = self._pipe
      signal.set_wakeup_fd(previous_fd)
      os.close(write)  # the watcher reads EOF, closes its end and ends
    if _active is self:
      _active = None


def reinstall() -> None:
  """Takes SIGTERM back after `jax.distributed.initialize`, whose preemption notifier
  installs its own handler (which never reaches Python)."""
  if _active is not None and _active._previous:  # pylint: disable=protected-access
    for signum in _NAMES:
      signal.signal(signum, _active._handle)  # pylint: disable=protected-access


def requested() -> str | None:
  """'SIGTERM' or 'Ctrl-C' when a stop was requested in this process, else None."""
  return _active.requested if _active is not None else None


def wait_ready(tree) -> None:
  """Waits for the arrays of `tree`, raising `Interrupted` when a stop is requested.

  Only a single-process run gives up a computation: with several processes the others
  would wait in the next collective, so they notice the request at the next step.
  """
  if _active is None or jax.process_count() > 1:
    return
  arrays = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
  while True:
    if _active.requested:
      raise Interrupted(_active.requested)
    if all(x.is_ready() for x in arrays):
      return
    time.sleep(0.02)
