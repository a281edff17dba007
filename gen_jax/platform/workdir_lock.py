"""One training process per workdir: an exclusive lock on WORKDIR/.lock.

The lock is `fcntl.flock` on a file holding the holder's host and PID. The kernel
releases it when the holder's process ends in any way (exit, crash, kill -9), so a lock
file left by a dead process is simply taken over; a live holder makes a second process
refuse with one line naming it. On filesystems without flock (some network mounts) the
file's PID is checked instead when it names this host.
"""

import errno
import fcntl
import json
import os
import socket

from gen_jax.platform.errors import UserError

LOCK_NAME = '.lock'


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _read_holder(path: str) -> dict:
  try:
    with open(path) as f:
      return json.loads(f.read() or '{}')
  except (OSError, ValueError):
    return {}


class WorkdirLock:
  """Holds WORKDIR/.lock until `release` (or the process's end).

  Args:
    workdir: the run's directory (created if missing).
  Raises:
    UserError: another live process holds the lock.
  """

  def __init__(self, workdir: str):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, LOCK_NAME)
    self.took_over = None  # the holder a stale lock file named, if any
    self._file = open(self.path, 'a+')  # pylint: disable=consider-using-with
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        self._file.close()
        raise UserError(self._held_message(_read_holder(self.path))) from None
      # No flock here (ENOLCK, EOPNOTSUPP on some network filesystems): check the PID.
      holder = _read_holder(self.path)
      if (holder.get('host') == socket.gethostname() and holder.get('pid') != os.getpid()
          and _pid_alive(int(holder.get('pid', 0)))):
        self._file.close()
        raise UserError(self._held_message(holder)) from None
    previous = _read_holder(self.path)
    if previous.get('pid') and previous.get('pid') != os.getpid():
      self.took_over = previous
    self._file.seek(0)
    self._file.truncate()
    self._file.write(json.dumps({'host': socket.gethostname(), 'pid': os.getpid()}) + '\n')
    self._file.flush()

  def _held_message(self, holder: dict) -> str:
    who = (f'process {holder.get("pid", "?")} on host {holder.get("host", "?")}'
           if holder else 'another process')
    return (f'the workdir {os.path.dirname(self.path)} is in use by {who} (lock {self.path}); '
            f'wait for it to end or stop it, or use another --workdir.')

  def release(self) -> None:
    if self._file is not None and not self._file.closed:
      try:
        self._file.seek(0)
        self._file.truncate()
        fcntl.flock(self._file, fcntl.LOCK_UN)
      except OSError:
        pass  # closing releases it anyway
      self._file.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.release()
