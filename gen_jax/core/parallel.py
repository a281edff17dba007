"""Device mesh, per-device step mapping, and host-local -> global arrays.

The programming model is pmap's: a train step is written for one device, sees its
shard of the batch, and averages with explicit collectives over the `data` axis
(`lax.pmean(x, DATA_AXIS)`). `map_per_device` maps it over every device of every
process with `jax.shard_map` under `jax.jit`, so the same code runs on one CPU,
8 GPUs or a TPU pod slice.

`check_vma` stays on. A replicated parameter is *invariant* over the data axis, and
the gradient of a per-device loss with respect to an invariant value comes back
already summed over devices. Steps therefore call `as_varying(params)` before
differentiating, which makes the gradient per-device again, and then `lax.pmean` it:
exactly pmap's semantics, tested against one device.
"""

from typing import Any, Callable

import jax
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from gen_jax.platform import preemption
from gen_jax.platform.errors import UserError

DATA_AXIS = 'data'


def make_mesh() -> jax.sharding.Mesh:
  """A 1-d mesh over all devices of all processes, with the axis `data`."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,))


def check_divisible(count: int, what: str, mesh: jax.sharding.Mesh) -> None:
  """One-line error unless `count` splits evenly over the devices (and processes)."""
  n = mesh.devices.size
  if count % n:
    raise UserError(
        f'{what}={count} does not divide by the {n} devices of this run '
        f'({jax.process_count()} process(es) x {jax.local_device_count()} local); '
        f'set {what} to a multiple of {n}, or change the device count '
        f'(--config.parallel.cpu_devices on CPU).')


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh) -> Any:
  """Places a host pytree (identical on every process) on all devices."""
  sharding = replicated(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(np.shape(x), sharding,
                                             lambda idx: np.asarray(x)[idx]), tree)


def host_local_to_global(local_tree: Any, mesh) -> Any:
  """Stitches each process's slice of the global batch into global arrays."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_tree)


def global_to_host(tree: Any) -> Any:
  """Fetches (possibly multi-process) global arrays in full to every host as numpy.

  Sample grids and evaluations wait here: a single-process run stops waiting when
  SIGTERM or Ctrl-C arrives (`preemption.Interrupted`).
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  preemption.wait_ready(tree)
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def as_varying(tree: Any) -> Any:
  """Marks replicated values as per-device, so gradients w.r.t. them are per-device."""
  return jax.tree.map(lambda x: lax.pcast(x, DATA_AXIS, to='varying'), tree)


def shard_host_array(x: np.ndarray, mesh) -> jax.Array:
  """A host array that is the same on every process, split over the devices along axis 0."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, batch_sharded(mesh), lambda idx: x[idx])


def per_example_keys(rng: jax.Array, index: jax.Array) -> jax.Array:
  """One key per example, fold_in(rng, index): draws keyed by an example's position in
  the global batch do not depend on how the batch is split over devices.  index: (B,)."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, index)


def device_rng(rng: jax.Array) -> jax.Array:
  """Folds the device's position on the data axis into a (replicated) key."""
  return jax.random.fold_in(rng, lax.axis_index(DATA_AXIS))


def map_per_device(fn: Callable, mesh, in_specs, out_specs,
                   donate_argnums: tuple[int, ...] = ()) -> Callable:
  """jit(shard_map(fn)): `fn` is written for one device's shard.

  Args:
    fn: the per-device function.
    mesh: the device mesh from `make_mesh`.
    in_specs, out_specs: PartitionSpecs; use `P()` for replicated values and
      `P(DATA_AXIS)` for values split along their leading (batch) axis.
    donate_argnums: arguments whose buffers the step may reuse (the train state).
  Returns:
    The compiled, mapped function.
  """
  mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs)
  return jax.jit(mapped, donate_argnums=donate_argnums)


REPLICATED = P()
SHARDED = P(DATA_AXIS)


class RowMapper:
  """Runs per-device functions of (replicated params, rows) over host arrays of any length.

  The rows are padded to a multiple of the device count (repeating the last row), split
  over the devices, and the outputs gathered to every host, so callers never see the
  device count. One compiled function per (fn, number of arrays) is kept.
  """

  def __init__(self, mesh):
    self.mesh = mesh
    self._compiled: dict = {}

  def _mapped(self, fn: Callable, num_arrays: int) -> Callable:
    key = (fn, num_arrays)
    if key not in self._compiled:
      self._compiled[key] = map_per_device(
          fn, self.mesh, in_specs=(REPLICATED,) + (SHARDED,) * num_arrays,
          out_specs=SHARDED)
    return self._compiled[key]

  def __call__(self, fn: Callable, params: Any, *arrays: np.ndarray, size: int = 0) -> Any:
    """fn(params, *row_shards) on every device, over the leading axis of host `arrays`.

    Args:
      fn: a per-device function of (replicated) params and this device's rows.
      params: replicated parameters.
      *arrays: (N, ...) numpy arrays, the same on every process.
      size: pad to at least this many rows (to reuse one compilation across calls).
    Returns:
      fn's outputs for the N rows, as numpy on every host.
    """
    n, devices = len(arrays[0]), self.mesh.devices.size
    padded = -(-max(n, size) // devices) * devices
    shards = [shard_host_array(np.concatenate([a, np.repeat(a[-1:], padded - n, axis=0)]),
                               self.mesh) for a in arrays]
    out = global_to_host(self._mapped(fn, len(arrays))(params, *shards))
    return jax.tree.map(lambda x: np.asarray(x)[:n], out)

  def in_chunks(self, fn: Callable, params: Any, *arrays: np.ndarray, chunk: int) -> Any:
    """`self(fn, params, *arrays)` over `chunk` rows at a time (the last one padded, so
    every call has one shape and compiles once), outputs concatenated along axis 0."""
    n = len(arrays[0])
    parts = [self(fn, params, *(a[i:i + chunk] for a in arrays), size=chunk)
             for i in range(0, n, chunk)]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
