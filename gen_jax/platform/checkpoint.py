"""Orbax checkpoints of the whole train state (the only module that imports orbax)."""

import dataclasses
import hashlib
import os
import shutil
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from gen_jax.platform.errors import UserError


def fingerprint(tree, *extra: str) -> str:
  """sha256 of a pytree's leaves (and any strings), 16 hex digits: names cached results
  (a classifier's or VAE's parameters, Inception weights)."""
  digest = hashlib.sha256(''.join(extra).encode())
  for leaf in jax.tree.leaves(jax.device_get(tree)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def _key_name(key) -> str:
  for attribute in ('key', 'name', 'idx'):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _describe_shapes(tree) -> dict[str, tuple]:
  """{'params/Conv_0/kernel': shape}: dataclass fields and dict keys named alike, so
  a saved tree's metadata and a live state compare."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {'/'.join(_key_name(k) for k in path): tuple(getattr(leaf, 'shape', ()))
          for path, leaf in flat}


def _empty_fields_absent_on_disk(abstract_state: Any, saved_metadata: Any) -> set[str]:
  """Dataclass fields of the state that hold no arrays and that the checkpoint lacks."""
  if not dataclasses.is_dataclass(abstract_state):
    return set()
  on_disk = set(saved_metadata.keys()) if hasattr(saved_metadata, 'keys') else {
      _key_name(path[0]) for path, _ in jax.tree_util.tree_flatten_with_path(saved_metadata)[0]}
  return {f.name for f in dataclasses.fields(abstract_state)
          if f.name not in on_disk and not jax.tree.leaves(getattr(abstract_state, f.name))}


class SaveFailed(UserError):
  """A checkpoint save failed. In a multi-process run the cause is most often a peer that
  died during the save's collectives, so the runner first lets the peer watchdog name it."""


class Checkpointer:
  """Saves and restores `TrainState`s under WORKDIR/checkpoints.

  Args:
    workdir: the run's directory.
    keep: how many checkpoints to keep.
    async_save: write in a background thread (the step loop goes on meanwhile).
  """

  def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(keep, 1), create=True, enable_async_checkpointing=async_save)
    # The handler is named up front so that a fresh process can read item metadata.
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def saved_shapes(self, step: int | None = None) -> dict[str, tuple]:
    """{'params/params/conv_in/kernel': shape, ...} of checkpoint `step` (default: latest),
    read from its metadata without restoring it."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise UserError(f'no checkpoint in {self.directory}: train first '
                      f'(--mode=train with the same --workdir).')
    return _describe_shapes(self._manager.item_metadata(step))
  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def step_size(self, step: int) -> int:
    """Bytes checkpoint `step` takes on disk."""
    total = 0
    for root, _, files in os.walk(os.path.join(self.directory, str(step))):
      total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total

  def check_space(self, step: int) -> None:
    """One-line error when the disk cannot hold another checkpoint like the last one.

    Cheap (a statvfs and a walk of the last checkpoint); skipped when there is none.
    """
    last = self.latest_step()
    if last is None:
      return
    need = self.step_size(last)
    try:
      free = shutil.disk_usage(self.directory).free
    except OSError:
      return
    if free < need * 1.05 + (1 << 20):
      raise UserError(
          f'not enough disk space to save checkpoint {step}: {free / 2**20:.1f} MiB free in '
          f'{self.directory}, the last checkpoint took {need / 2**20:.1f} MiB; checkpoint '
          f'{last} is kept. Free some space, then rerun the same command to resume.')

  def save(self, step: int, state: Any) -> None:
    """Starts saving `state` as checkpoint `step` (finished by `wait` or the next save).

    Raises:
      UserError: the previous save failed (e.g. disk full), or this one cannot start.
    """
    self.check_errors()
    last = self.latest_step()
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    except Exception as e:  # pylint: disable=broad-except  # OSError, or orbax's wrapping
      raise self._save_failed(step, e, last) from None

  def check_errors(self) -> None:
    """Raises the error of a finished background save, if one failed."""
    try:
      self._manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_failed(None, e, self.latest_step()) from None

  def _save_failed(self, step, error, last) -> SaveFailed:
    what = f'checkpoint {step}' if step is not None else 'a checkpoint'
    kept = f'checkpoint {last} is kept' if last is not None else 'no checkpoint is kept'
    return SaveFailed(f'saving {what} in {self.directory} failed: {_first_line(error)}; '
                     f'{kept}. Fix the cause (e.g. free disk space), then rerun the same '
                     f'command to resume.')

  def wait(self) -> None:
    """Waits for a background save; raises its error as a UserError."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_failed(None, e, None) from None
    self.check_errors()

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores checkpoint `step` (default: latest) into the shapes and shardings of
    `abstract_state` (a pytree of jax.ShapeDtypeStruct, e.g. from `jax.eval_shape`).

    Raises:
      UserError: no checkpoint, or one whose tree or shapes do not fit.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise UserError(f'no checkpoint in {self.directory}: train first '
                      f'(--mode=train with the same --workdir).')
    saved = _describe_shapes(self._manager.item_metadata(step))
    wanted = _describe_shapes(abstract_state)
    for name in sorted(set(saved) | set(wanted)):
      if saved.get(name) != wanted.get(name):
        what = ('is missing there' if name not in saved else
                'is not in this config\'s state' if name not in wanted else
                f'has shape {saved[name]} there but {wanted[name]} here')
        raise UserError(
            f'checkpoint {step} in {self.directory} does not fit this config: {name} {what}; '
            f'use a new --workdir, or the config that wrote it (config.json there).')
    absent = _empty_fields_absent_on_disk(abstract_state, self._manager.item_metadata(step))
    if not absent:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    # A checkpoint written before the state gained a field that holds nothing in this
    # run: restore the fields it has, keep the empty ones (old runs stay loadable).
    target = {f.name: getattr(abstract_state, f.name) for f in dataclasses.fields(abstract_state)
              if f.name not in absent}
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    return abstract_state.replace(**restored)

  def restore_newest_intact(self, abstract_state: Any, set_aside: bool = False,
                            agree: Callable[[bool], bool] | None = None,
                            say: Callable[[str], None] = print) -> Any:
    """The newest checkpoint that restores, walking back over damaged ones.

    A checkpoint is damaged when its files are (a missing `default/` or `_METADATA`,
    unreadable metadata, a truncated array file): it is skipped with a note saying why,
    and with `set_aside` renamed to `<step>.damaged-<time>` (never deleted), which
    orbax no longer lists. A checkpoint that is intact but does not fit the config stops
    the walk with that error: an older one would not fit either.

    Args:
      abstract_state: the shapes and shardings to restore into.
      set_aside: rename damaged checkpoints (the training process, holding the lock).
      agree: in a multi-process run, fn(ok on this process) -> ok on all (so every
        process skips the same checkpoints); None: single process.
      say: where notes go.
    Returns:
      The restored state.
    Raises:
      UserError: no checkpoint, none intact, or one that does not fit.
    """
    steps = self.all_steps()
    if not steps:
      self.restore(abstract_state)  # raises the "no checkpoint" error
    skipped = []
    for step in reversed(steps):
      problem = self._damage(step)
      restored = None
      if problem is None:
        try:
          restored = self.restore(abstract_state, step)
        except UserError:
          raise
        except Exception as e:  # pylint: disable=broad-except  # tensorstore / orbax errors
          problem = f'its files do not read ({_first_line(e)})'
      ok = problem is None
      if agree is not None:
        all_ok = agree(ok)
        if ok and not all_ok:
          problem = 'another process could not read it'
        ok = all_ok
      if ok:
        if skipped and agree is not None:
          agree(True)  # a barrier: process 0 has renamed them; every manager re-lists
          self._manager.reload()
        return restored
      skipped.append(step)
      where = ''
      if set_aside:
        where = f'; set aside as {os.path.basename(self._set_aside(step))}'
      say(f'warning: checkpoint {step} in {self.directory} is damaged: {problem}; '
          f'skipped{where}.')
    raise UserError(f'no intact checkpoint in {self.directory} (damaged: '
                    f'{", ".join(map(str, skipped))}); set them aside and rerun to start '
                    f'afresh, or use a new --workdir.')

  def _damage(self, step: int) -> str | None:
    """Why checkpoint `step`'s files cannot be a whole checkpoint, or None."""
    item = os.path.join(self.directory, str(step), 'default')
    if not os.path.isdir(item):
      return 'default/ (the state) is missing'
    if not os.path.exists(os.path.join(item, '_METADATA')):
      return 'default/_METADATA is missing'
    try:
      if not _describe_shapes(self._manager.item_metadata(step)):
        return 'its metadata lists no arrays'
    except Exception as e:  # pylint: disable=broad-except
      return f'its metadata does not read ({_first_line(e)})'
    return None

  def _set_aside(self, step: int) -> str:
    """Renames checkpoint `step` to `<step>.damaged-<time>` (process 0); returns the path."""
    source = os.path.join(self.directory, str(step))
    target = f'{source}.damaged-{time.strftime("%Y%m%dT%H%M%S")}'
    if jax.process_index() == 0 and os.path.exists(source):
      os.rename(source, target)
    self._manager.reload()
    return target

  def close(self) -> None:
    try:
      self._manager.wait_until_finished()
    finally:
      self._manager.close()


def _first_line(error: BaseException) -> str:
  """An exception as one short line (tensorstore's messages run to pages)."""
  text = ' '.join(str(error).split()) or type(error).__name__
  for cut in (' See full TensorStore details', ' [tensorstore_spec'):
    text = text.split(cut)[0]
  return text[:200] + ('...' if len(text) > 200 else '')
