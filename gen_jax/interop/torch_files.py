"""Reading `torch.save` files (state_dicts of tensors) without importing torch.

A restricted unpickler rebuilds tensors as numpy arrays and refuses every global outside
a short allow-list, so no code in the file is ever run. Both of torch.save's formats are
read: the zip format (torch >= 1.6) and the legacy one. `.npz` files are read as they are.
"""

import collections
import pickle
import zipfile

import jax.numpy as jnp
import numpy as np

from gen_jax.platform.errors import UserError

# torch.<X>Storage -> numpy dtype; the storage types a state_dict of these dtypes pickles.
_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': jnp.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
# torch.save's legacy (pre-1.6, non-zip) format starts with this pickled number.
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _Storage:
  """A torch storage: a flat array, filled when the file's data section is reached."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel = np.dtype(dtype), numel
    self.data: np.ndarray | None = None  # (numel,)


class _StorageView:
  """A legacy-format storage that is a slice of another (view_metadata)."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root, self.offset, self.numel = root, offset, numel

  @property
  def data(self):
    return self.root.data[self.offset:self.offset + self.numel]


class _Tensor:
  """torch._utils._rebuild_tensor_v2's arguments, materialised once the storages are read."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def to_numpy(self) -> np.ndarray:
    flat = self.storage.data
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if min(self.size, default=1) > 0 and (self.offset < 0 or last >= flat.size):
      raise ValueError(f'tensor of size {self.size} overruns its storage of {flat.size}')
    return np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size,
        strides=[s * flat.itemsize for s in self.stride]).copy()


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


class _RestrictedUnpickler(pickle.Unpickler):
  """Builds a state_dict's tensors as `_Tensor`s; any other global is refused, never imported."""

  def __init__(self, file, storage_loader):
    super().__init__(file)
    self._storage_loader = storage_loader  # persistent id tuple -> _Storage or _StorageView

  def find_class(self, module, name):
    if module == 'collections' and name == 'OrderedDict':
      return collections.OrderedDict
    if module == 'torch._utils' and name == '_rebuild_tensor_v2':
      return _rebuild_tensor_v2
    if module == 'torch._utils' and name == '_rebuild_parameter':
      return _rebuild_parameter
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _STORAGE_DTYPES[name]
    raise pickle.UnpicklingError(f'refusing to unpickle {module}.{name}: only a state_dict '
                                 'of plain tensors is read')

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
      raise pickle.UnpicklingError(f'unknown persistent id {pid!r:.80}')
    return self._storage_loader(pid)


def _read_zip_format(archive: zipfile.ZipFile, pkl_name: str):
  """torch.save's default format: <prefix>/data.pkl plus one <prefix>/data/<key> per storage."""
  prefix = pkl_name[:-len('data.pkl')]
  names = set(archive.namelist())
  byteorder = (archive.read(prefix + 'byteorder').decode().strip()
               if prefix + 'byteorder' in names else 'little')
  order = '<' if byteorder == 'little' else '>'
  storages = {}

  def load_storage(pid):
    _, dtype, key, _location, numel = pid[:5]
    if key not in storages:
      storage = _Storage(dtype, numel)
      storage.data = np.frombuffer(archive.read(f'{prefix}data/{key}'),
                                   storage.dtype.newbyteorder(order))
      storages[key] = storage
    return storages[key]

  with archive.open(pkl_name) as f:
    return _RestrictedUnpickler(f, load_storage).load()


def _no_storages(pid):
  raise pickle.UnpicklingError(f'unexpected storage {pid!r:.80} outside the state_dict')


def _read_legacy_format(f):
  """torch.save(_use_new_zipfile_serialization=False): magic, protocol, sys info, the object,
  the storage keys in order, then each storage as an int64 element count and its raw bytes."""
  if _RestrictedUnpickler(f, _no_storages).load() != _LEGACY_MAGIC:
    raise pickle.UnpicklingError('not a torch.save file (bad magic number)')
  _RestrictedUnpickler(f, _no_storages).load()  # protocol version
  sys_info = _RestrictedUnpickler(f, _no_storages).load()
  order = '<' if sys_info.get('little_endian', True) else '>'
  storages = {}

  def load_storage(pid):
    _, dtype, key, _location, numel, view = pid
    if key not in storages:
      storages[key] = _Storage(dtype, numel)
    if view is None:
      return storages[key]
    _view_key, offset, view_numel = view
    return _StorageView(storages[key], offset, view_numel)

  result = _RestrictedUnpickler(f, load_storage).load()
  for key in _RestrictedUnpickler(f, _no_storages).load():
    storage = storages[key]
    numel = int(np.frombuffer(f.read(8), order + 'i8')[0])
    nbytes = numel * storage.dtype.itemsize
    raw = f.read(nbytes)
    if numel != storage.numel or len(raw) != nbytes:
      raise pickle.UnpicklingError(f'storage {key} is truncated')
    storage.data = np.frombuffer(raw, storage.dtype.newbyteorder(order))
  return result


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """A torch.save'd state_dict (zip or legacy format) or an .npz -> {name: numpy array}.

  Nothing in the file is executed: the unpickler maps torch's tensor-rebuilding globals to numpy
  and refuses every other global.

  Raises:
    UserError: one line, when the file is neither, or holds anything but named tensors.
  """
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith('data.pkl')]
        if not pkl:  # an .npz: a zip of .npy files; allow_pickle=False keeps it data-only
          with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
        obj = _read_zip_format(archive, pkl[0])
    else:
      with open(path, 'rb') as f:
        obj = _read_legacy_format(f)
    if not isinstance(obj, dict):
      raise ValueError(f'the file holds a {type(obj).__name__}, not a state_dict')
    state_dict = {}
    for key, value in obj.items():
      if not isinstance(value, _Tensor):
        raise ValueError(f'{key!r} is a {type(value).__name__}, not a tensor')
      state_dict[key] = value.to_numpy()
    return state_dict
  except (pickle.UnpicklingError, ValueError, KeyError, EOFError, TypeError, AttributeError,
          IndexError, zipfile.BadZipFile) as e:
    raise UserError(f'{path}: not a readable PyTorch state_dict or .npz ({e})') from None
