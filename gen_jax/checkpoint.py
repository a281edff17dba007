"""Orbax checkpoints of the whole train state (the only module that imports orbax)."""

import dataclasses
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from gen_jax.errors import UserError


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

  def save(self, step: int, state: Any) -> None:
    """Starts saving `state` as checkpoint `step` (finished by `wait` or the next save)."""
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def wait(self) -> None:
    self._manager.wait_until_finished()

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

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
