"""IDX files, the format MNIST and Fashion-MNIST ship in: a header, then raw uint8 data.

An IDX file starts with a big-endian uint32 magic number whose low byte is the number of
dimensions (0x00000803: a (N, H, W) uint8 image array; 0x00000801: (N,) uint8 labels),
then one big-endian uint32 per dimension, then the array in C order. The files are often
gzipped; either form reads the same.

Pure numpy, no TensorFlow: every malformed file is one UserError line naming it.
"""

import gzip
import os
import struct
import zlib

import numpy as np

from gen_jax.platform.errors import UserError

IMAGES_MAGIC = 0x00000803  # uint8 data, 3 dimensions: (N, H, W)
LABELS_MAGIC = 0x00000801  # uint8 data, 1 dimension: (N,)

# The file stems of each split, as MNIST and Fashion-MNIST name them: (images, labels).
SPLIT_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}

_GZIP_MAGIC = b'\x1f\x8b'


def _read_bytes(path: str) -> bytes:
  """The file's contents, gunzipped when it is gzip (told by its first bytes, not its name)."""
  with open(path, 'rb') as f:
    raw = f.read()
  if not raw.startswith(_GZIP_MAGIC):
    return raw
  try:
    return gzip.decompress(raw)
  except (EOFError, OSError, zlib.error) as e:  # truncated or corrupt gzip stream
    raise UserError(f'{path}: corrupt or truncated gzip file ({e}); download it '
                    f'again.') from None


def read_idx(path: str, magic: int) -> np.ndarray:
  """One IDX file as a uint8 array of the shape its header gives.

  Args:
    path: the file, gzipped or not.
    magic: the magic number it must have (IMAGES_MAGIC or LABELS_MAGIC).
  Returns:
    The array, e.g. (N, H, W) for images, (N,) for labels, uint8.
  Raises:
    UserError: another magic number, or data shorter or longer than the header says.
  """
  raw = _read_bytes(path)
  kind = 'image' if magic == IMAGES_MAGIC else 'label'
  if len(raw) < 4:
    raise UserError(f'{path}: truncated IDX file ({len(raw)} bytes, not even a magic '
                    f'number).')
  (found,) = struct.unpack('>I', raw[:4])
  if found != magic:
    raise UserError(f'{path}: not an IDX {kind} file (magic number 0x{found:08x}, '
                    f'expected 0x{magic:08x}).')
  ndim = magic & 0xff
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise UserError(f'{path}: truncated IDX file (the header of {header} bytes has '
                    f'{len(raw)}).')
  shape = struct.unpack(f'>{ndim}I', raw[4:header])
  size = int(np.prod(shape, dtype=np.int64))
  if len(raw) - header != size:
    what = 'truncated IDX file' if len(raw) - header < size else 'IDX file too long'
    raise UserError(f'{path}: {what} (header shape {shape}: {size} bytes of data, the '
                    f'file has {len(raw) - header}).')
  return np.frombuffer(raw, np.uint8, size, header).reshape(shape)


def read_split(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
  """An images file and its labels file, checked to hold as many of each.

  Args:
    images_path: the IDX image file (magic 0x00000803).
    labels_path: the IDX label file (magic 0x00000801).
  Returns:
    (images (N, H, W) uint8, labels (N,) uint8).
  """
  images = read_idx(images_path, IMAGES_MAGIC)  # (N, H, W)
  labels = read_idx(labels_path, LABELS_MAGIC)  # (N,)
  if images.shape[0] != labels.shape[0]:
    raise UserError(f'{labels_path}: {labels.shape[0]} labels for the {images.shape[0]} '
                    f'images of {images_path}; the two files must come from one split.')
  return images, labels


def find_split(split: str, directories) -> tuple[str, str] | None:
  """The (images, labels) files of `split` in the first directory holding both.

  Each file may be gzipped (`NAME.gz`) or not (`NAME`); the uncompressed one is taken
  when both are there, as it reads faster.

  Args:
    split: a key of SPLIT_FILES ('train' or 'test').
    directories: where to look, in order of preference; '' entries are skipped.
  Returns:
    The two paths, or None when no directory holds both.
  """
  stems = SPLIT_FILES[split]
  for directory in directories:
    if not directory:
      continue
    paths = [_existing(os.path.join(os.path.expanduser(directory), stem)) for stem in stems]
    if all(paths):
      return paths[0], paths[1]
  return None


def _existing(stem_path: str) -> str | None:
  for path in (stem_path, stem_path + '.gz'):
    if os.path.isfile(path):
      return path
  return None
