"""FID Inception-v3 weights: pytorch-fid's state_dict <-> flax variables, and loading.

The standard file is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`
(`FID_WEIGHTS_URL`), read without torch (`gen_jax.interop.torch_files`); an `.npz` with
the same keys (PyTorch names and layouts) is accepted too. Every mismatch is a one-line
`UserError` naming the key and both shapes.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from gen_jax.interop.torch_files import read_state_dict
from gen_jax.models.inception import INPUT_SIZE, InceptionV3
from gen_jax.platform.errors import UserError

FID_WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                   'pt_inception-2015-12-05-6726825d.pth')


# (parent module, torch leaf) -> (flax collection, flax leaf).
_LEAVES = {
    ('conv', 'weight'): ('params', 'kernel'),
    ('bn', 'weight'): ('params', 'scale'),
    ('bn', 'bias'): ('params', 'bias'),
    ('bn', 'running_mean'): ('batch_stats', 'mean'),
    ('bn', 'running_var'): ('batch_stats', 'var'),
    ('fc', 'weight'): ('params', 'kernel'),
    ('fc', 'bias'): ('params', 'bias'),
}
_TORCH_LEAF = {(parent, flax): torch for (parent, torch), (_, flax) in _LEAVES.items()}
# BatchNorm's update counter: an int64 scalar in the state_dict, meaningless in inference.
_IGNORED_SUFFIX = '.num_batches_tracked'


def flax_path(key: str) -> tuple[str, tuple[str, ...]]:
  """'Mixed_5b.branch1x1.conv.weight' -> ('params', ('Mixed_5b', 'branch1x1', 'conv', 'kernel'))."""
  *modules, leaf = key.split('.')
  if not modules or (modules[-1], leaf) not in _LEAVES:
    raise KeyError(key)
  collection, flax_leaf = _LEAVES[(modules[-1], leaf)]
  return collection, (*modules, flax_leaf)


def torch_key(path: tuple[str, ...]) -> str:
  """('Mixed_5b', 'branch1x1', 'conv', 'kernel') -> 'Mixed_5b.branch1x1.conv.weight'."""
  *modules, leaf = path
  return '.'.join([*modules, _TORCH_LEAF[(modules[-1], leaf)]])


# Axis permutations between the layouts: conv (O, I, kh, kw) <-> (kh, kw, I, O), linear
# (O, I) <-> (I, O).
_TORCH_TO_FLAX_AXES = {4: (2, 3, 1, 0), 2: (1, 0)}
_FLAX_TO_TORCH_AXES = {4: (3, 2, 0, 1), 2: (1, 0)}


def _permute(array_or_shape, axes_by_ndim):
  """Permutes an array's axes, or a shape's entries, by its rank's entry (others unchanged)."""
  if isinstance(array_or_shape, tuple):
    axes = axes_by_ndim.get(len(array_or_shape))
    return tuple(array_or_shape[i] for i in axes) if axes else array_or_shape
  axes = axes_by_ndim.get(array_or_shape.ndim)
  return array_or_shape.transpose(axes) if axes else array_or_shape


@functools.lru_cache(maxsize=1)
def expected_state_dict_shapes() -> dict[str, tuple[int, ...]]:
  """PyTorch name -> PyTorch shape of every array the model needs (no num_batches_tracked)."""
  variables = jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0),
                             jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  shapes = {}
  for collection in ('params', 'batch_stats'):
    for path, leaf in traverse_util.flatten_dict(variables[collection]).items():
      shapes[torch_key(path)] = _permute(tuple(leaf.shape), _FLAX_TO_TORCH_AXES)
  return shapes


def state_dict_to_variables(state_dict: dict[str, np.ndarray], source: str = 'state_dict'):
  """A PyTorch-named state_dict (numpy arrays) -> flax variables {'params', 'batch_stats'}.

  Args:
    state_dict: pytorch-fid's FID Inception state_dict; `num_batches_tracked` entries are
      optional and ignored.
    source: what the state_dict came from, for error messages.
  Returns:
    {'params': ..., 'batch_stats': ...} float32 arrays for `InceptionV3().apply`.
  Raises:
    UserError: one line naming the first missing, unexpected or mis-shaped key.
  """
  expected = expected_state_dict_shapes()
  for key, want in expected.items():
    if key not in state_dict:
      raise UserError(f'{source}: {key!r} is missing (the FID Inception-v3 expects shape '
                      f'{want}); is this pytorch-fid\'s {os.path.basename(FID_WEIGHTS_URL)}?')
    got = tuple(np.shape(state_dict[key]))
    if got != want:
      raise UserError(f'{source}: {key!r} has shape {got}, the FID Inception-v3 expects {want}')
  for key, value in state_dict.items():
    if key not in expected and not key.endswith(_IGNORED_SUFFIX):
      raise UserError(f'{source}: unexpected key {key!r} (shape {tuple(np.shape(value))}); '
                      'not the FID Inception-v3 state_dict')
  flat = {}
  for key in expected:
    collection, path = flax_path(key)
    flat[(collection, *path)] = jnp.asarray(
        _permute(np.asarray(state_dict[key], np.float32), _TORCH_TO_FLAX_AXES))
  return traverse_util.unflatten_dict(flat)


def variables_to_state_dict(variables) -> dict[str, np.ndarray]:
  """The inverse of `state_dict_to_variables`: PyTorch names and layouts, float32 numpy.

  `np.savez(path, **variables_to_state_dict(v))` writes an `.npz` that `load_inception_params`
  reads.
  """
  state_dict = {}
  for collection in ('params', 'batch_stats'):
    for path, leaf in traverse_util.flatten_dict(variables[collection]).items():
      state_dict[torch_key(path)] = _permute(np.asarray(leaf, np.float32), _FLAX_TO_TORCH_AXES)
  return state_dict


def load_inception_params(path: str):
  """Reads FID Inception weights: pytorch-fid's .pth (read without torch) or an .npz.

  Args:
    path: `pt_inception-2015-12-05-6726825d.pth` from `FID_WEIGHTS_URL`, or an `.npz` whose
      keys and array layouts are that state_dict's.
  Returns:
    flax variables {'params', 'batch_stats'} for `InceptionV3().apply`.
  Raises:
    UserError: one line, for a missing file, an unreadable file, or wrong keys or shapes.
  """
  if not os.path.isfile(path):
    raise UserError(f'Inception weights {path} not found: download pytorch-fid\'s '
                    f'{FID_WEIGHTS_URL} and set eval.inception_weights to its path')
  return state_dict_to_variables(read_state_dict(path), source=path)
