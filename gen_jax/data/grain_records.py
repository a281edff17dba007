"""Datasets read record by record with grain: image folders, ArrayRecord tfds, any array.

The memory loader (gen_jax.data.arrays.BatchSource) holds a whole split as float32. This module
reads one record at a time instead, so a split may be far larger than host memory
(ImageNet, LSUN, a folder of photos), and does the per-image work in grain: decode,
resize, crop, flip, in `data.num_workers` worker processes, batches prepared ahead of
the train step.

Records:
  * `FolderRecords`: PNG / JPEG files under a directory (`data.dataset='folder:PATH'`),
    labels from the first-level subfolder names when `data.labels_from_subfolders`.
  * `TfdsRecords`: a tensorflow-datasets split prepared as ArrayRecord
    (`tfds.data_source`: random access, no TensorFlow at read time).
  * `ArrayRecords`: an in-memory `ArrayDataset` (the embedded digits), already at size.

Images: decoded to uint8, the shorter side resized to `data.image_size` (Pillow's
bilinear filter, which widens with the scale factor when shrinking, i.e. antialiased;
or 'area': Pillow's box filter, the mean over each output pixel's footprint), then a
square crop along the longer side: centered, or at a random offset drawn from
(seed, step, position in the global batch). Values are scaled to [-1, 1] as float32.

Batch order: exactly gen_jax.data.datasets's (`arrays.batch_indices`, `arrays.batch_flips`): the
global batch of step s holds stream positions s*B .. s*B+B-1 of epochs permuted by
(seed, epoch), each process reads only its own slice, and flips are drawn per global
batch from (seed, step). grain's own samplers shuffle differently, so the order is
ours and grain maps the step to its batch: element s of the grain dataset is the batch
of step s. The position is the step, which the checkpoint holds, so a resumed run reads
exactly the batches of an uninterrupted one.

This module imports neither jax nor tensorflow: grain's worker processes import it.
"""

import dataclasses
import os
import sys
import weakref
from typing import Any, Sequence

import numpy as np

from gen_jax.data import arrays
from gen_jax.data import tfds_access
from gen_jax.platform.errors import UserError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
RESIZE_METHODS = ('bilinear', 'area')
CROPS = ('center', 'random')
BAD_IMAGE_POLICIES = ('fail', 'skip')


# --- preprocessing -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Preprocess:
  """uint8 (H, W, C) -> float32 (size, size, channels) in [-1, 1].

  Attributes:
    size: output side (`data.image_size`).
    channels: 1 (grey) or 3 (RGB); images are converted to it.
    resize: 'bilinear' (antialiased) or 'area' (box filter).
    crop: 'center' or 'random' (the offset along the longer side).
  """
  size: int
  channels: int
  resize: str = 'bilinear'
  crop: str = 'center'

  def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Resizes the shorter side to `size` and crops the square; rng draws a random crop."""
    from PIL import Image  # pylint: disable=g-import-not-at-top
    image = np.asarray(image)
    if image.ndim == 2:
      image = image[:, :, None]  # (H, W, 1)
    if image.shape[-1] != self.channels:
      image = _convert_channels(image, self.channels)
    h, w = image.shape[:2]
    scale = self.size / min(h, w)
    new_h, new_w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
    if (new_h, new_w) != (h, w):
      pil = Image.fromarray(image[:, :, 0] if self.channels == 1 else image)
      method = Image.BILINEAR if self.resize == 'bilinear' else Image.BOX
      image = np.asarray(pil.resize((new_w, new_h), method)).reshape(new_h, new_w, -1)
    top = self._offset(new_h, rng)
    left = self._offset(new_w, rng)
    crop = image[top:top + self.size, left:left + self.size]  # (size, size, C) uint8
    return crop.astype(np.float32) / 127.5 - 1.0

  def _offset(self, length: int, rng: np.random.Generator | None) -> int:
    if self.crop == 'random' and rng is not None:
      return int(rng.integers(0, length - self.size + 1))
    return (length - self.size) // 2


def _convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """(H, W, C) uint8 with C in {1, 2, 3, 4} -> (H, W, channels): grey <-> RGB, alpha dropped."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  mode = {1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA'}[image.shape[-1]]
  pil = Image.fromarray(image[:, :, 0] if mode == 'L' else image, mode=mode)
  out = np.asarray(pil.convert('L' if channels == 1 else 'RGB'))
  return out.reshape(out.shape[0], out.shape[1], channels)


# --- records -------------------------------------------------------------------------------

class BadImageError(Exception):
  """A record whose image cannot be decoded; `name` says which."""

  def __init__(self, name: str, reason: str):
    super().__init__(f'{name}: {reason}')
    self.name = name
    self.reason = reason


class FolderRecords:
  """PNG / JPEG files under `root`: record i is the i-th path in sorted order.

  Args:
    root: the folder.
    paths: the image files, relative to root, sorted.
    labels: (N,) int32 class of each file (zeros without labels).
    channels: 1 or 3: every image is converted to it.
  """

  def __init__(self, root: str, paths: Sequence[str], labels: np.ndarray, channels: int):
    self.root = root
    self.paths = list(paths)
    self.labels = np.asarray(labels, np.int32)
    self.channels = channels

  def __len__(self) -> int:
    return len(self.paths)

  def name(self, index: int) -> str:
    return os.path.join(self.root, self.paths[index])

  def __getitem__(self, index: int) -> dict[str, Any]:
    """{'image': (H, W, C) uint8, 'label': int}; raises BadImageError."""
    from PIL import Image  # pylint: disable=g-import-not-at-top
    path = self.name(index)
    try:
      with Image.open(path) as pil:
        pil = pil.convert('L' if self.channels == 1 else 'RGB')
        image = np.asarray(pil)
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for broken files
      raise BadImageError(path, f'{type(e).__name__}: {e}') from None
    return {'image': image, 'label': int(self.labels[index])}


class TfdsRecords:
  """A tfds split prepared as ArrayRecord, read by index (`tfds.data_source`)."""

  def __init__(self, source, name: str, split: str):
    self.source = source
    self.dataset_name = name
    self.split = split

  def __len__(self) -> int:
    return len(self.source)

  def name(self, index: int) -> str:
    return f'{self.dataset_name}[{self.split}] record {index}'

  def __getitem__(self, index: int) -> dict[str, Any]:
    try:
      example = self.source[index]
    except (OSError, ValueError) as e:
      raise BadImageError(self.name(index), f'{type(e).__name__}: {e}') from None
    return {'image': example['image'], 'label': int(example.get('label', 0))}


class ArrayRecords:
  """An in-memory `ArrayDataset` as records; its images are already at size in [-1, 1]."""

  def __init__(self, dataset: arrays.ArrayDataset):
    self.dataset = dataset

  def __len__(self) -> int:
    return len(self.dataset)

  def name(self, index: int) -> str:
    return f'example {index}'

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {'image': self.dataset.images[index], 'label': int(self.dataset.labels[index])}


@dataclasses.dataclass(frozen=True)
class RecordDataset:
  """A split read record by record (never whole in memory); grain reads it for training.

  Attributes:
    records: FolderRecords or TfdsRecords.
    preprocess: turns a record's uint8 image into the model's float32 image.
    num_classes: labels are 0..num_classes-1 (0: unlabelled).
    description: what it is, for logs.
  """
  records: Any
  preprocess: Preprocess
  num_classes: int
  description: str

  def __len__(self) -> int:
    return len(self.records)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of a preprocessed image."""
    return (self.preprocess.size, self.preprocess.size, self.preprocess.channels)


# --- image folders -------------------------------------------------------------------------

def list_folder(root: str, labels_from_subfolders: bool) -> tuple[list[str], np.ndarray, int]:
  """The image files under `root`, sorted, and their labels.

  Args:
    root: the folder.
    labels_from_subfolders: label = index of the first-level subfolder's name among the
      sorted subfolder names; every image must then be inside one.
  Returns:
    (relative paths, (N,) int32 labels, number of classes (0 without labels)).
  Raises:
    UserError: a missing folder, no images, or an image outside a class subfolder.
  """
  if not os.path.isdir(root):
    raise UserError(f'image folder {root!r} does not exist (data.dataset=\'folder:PATH\' '
                    f'needs a directory of PNG / JPEG files).')
  paths = []
  for directory, subdirs, files in os.walk(root, followlinks=True):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))  # .git, .ipynb_checkpoints
    for name in sorted(files):
      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.'):
        paths.append(os.path.relpath(os.path.join(directory, name), root))
  paths.sort()
  if not paths:
    raise UserError(f'image folder {root!r} holds no images (looked for '
                    f'{", ".join(IMAGE_EXTENSIONS)} files, also in subfolders).')
  if not labels_from_subfolders:
    return paths, np.zeros(len(paths), np.int32), 0
  loose = [p for p in paths if os.sep not in p]
  if loose:
    raise UserError(f'data.labels_from_subfolders: {os.path.join(root, loose[0])} is not in '
                    f'a class subfolder ({len(loose)} such images); move it into one or set '
                    f'data.labels_from_subfolders=False.')
  class_names = sorted({p.split(os.sep)[0] for p in paths})
  index = {name: i for i, name in enumerate(class_names)}
  labels = np.array([index[p.split(os.sep)[0]] for p in paths], np.int32)
  return paths, labels, len(class_names)


def folder_channels(records: FolderRecords, on_bad_image: str) -> int:
  """1 if the first readable image (in sorted order) is grey, else 3 (RGB)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for i in range(len(records)):
    try:
      with Image.open(records.name(i)) as pil:
        return 1 if pil.mode in ('1', 'L', 'LA', 'I', 'I;16', 'F') else 3
    except (OSError, ValueError, SyntaxError) as e:
      _bad_image(records.name(i), f'{type(e).__name__}: {e}', on_bad_image)
  raise UserError(f'image folder {records.root!r}: no image could be read.')


def folder_dataset(root: str, data_config) -> RecordDataset:
  """`folder:PATH` as records (nothing decoded yet but the first image)."""
  _preprocess(data_config, 3)  # bad options fail before a large folder is listed
  on_bad = data_config.on_bad_image
  if on_bad not in BAD_IMAGE_POLICIES:
    raise UserError(f"data.on_bad_image must be 'fail' or 'skip', not {on_bad!r}.")
  paths, labels, num_classes = list_folder(root, data_config.labels_from_subfolders)
  records = FolderRecords(root, paths, labels, channels=3)
  channels = folder_channels(records, on_bad)
  records = FolderRecords(root, paths, labels, channels)
  return RecordDataset(records, _preprocess(data_config, channels), num_classes,
                       f'image folder {root} ({len(paths)} images'
                       f'{f", {num_classes} classes" if num_classes else ""})')


# --- tfds ----------------------------------------------------------------------------------

def tfds_build_command(name: str, data_dir: str) -> str:
  return f'tfds build {name} --file_format=array_record --data_dir={data_dir or "DIR"}'


def tfds_dataset(name: str, split: str, data_config) -> RecordDataset:
  """A tfds split prepared as ArrayRecord, read by index (never downloads)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  _preprocess(data_config, 3)  # bad options fail before anything is opened
  data_dir = data_config.data_dir or None
  shown_dir = data_config.data_dir or '~/tensorflow_datasets'
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"unknown dataset {name!r}: use 'digits', 'folder:PATH' or a "
                    f"tensorflow-datasets name such as 'cifar10'.") from None
  except (NotImplementedError, AssertionError, FileNotFoundError):
    raise tfds_access.TfdsNotPrepared(
        f'tfds dataset {name!r} is not prepared in a random-access format in {shown_dir}: '
        f'run `{tfds_build_command(name, data_config.data_dir)}` on a machine with network '
        f'access (data.loader=\'grain\' reads ArrayRecord).') from None
  except ValueError as e:
    raise UserError(f'tfds dataset {name!r} cannot load split {split!r} ({e}).') from None
  features = source.dataset_info.features
  if 'image' not in features:
    raise UserError(f"tfds dataset {name!r} has no 'image' feature; gen_jax needs images.")
  shape = features['image'].shape
  channels = 1 if (len(shape) == 3 and shape[-1] == 1) else 3
  label = features['label'] if 'label' in features else None
  num_classes = int(getattr(label, 'num_classes', 0) or 0)
  return RecordDataset(TfdsRecords(source, name, split), _preprocess(data_config, channels),
                       num_classes, f'tfds {name} {split} ArrayRecord ({len(source)} images)')


def _preprocess(data_config, channels: int) -> Preprocess:
  resize = data_config.resize
  crop = data_config.crop
  if resize not in RESIZE_METHODS:
    raise UserError(f"data.resize must be 'bilinear' or 'area', not {resize!r}.")
  if crop not in CROPS:
    raise UserError(f"data.crop must be 'center' or 'random', not {crop!r}.")
  return Preprocess(data_config.image_size, channels, resize, crop)


def decode_all(dataset: RecordDataset, on_bad_image: str) -> arrays.ArrayDataset:
  """The whole split decoded into memory (center crops): the memory loader's view."""
  images, labels = [], []
  center = dataclasses.replace(dataset.preprocess, crop='center')
  for i in range(len(dataset.records)):
    try:
      record = dataset.records[i]
    except BadImageError as e:
      _bad_image(e.name, e.reason, on_bad_image)
      continue
    images.append(center(record['image']))
    labels.append(record['label'])
  if not images:
    raise UserError(f'{dataset.description}: no image could be read.')
  return arrays.ArrayDataset(np.stack(images), np.array(labels, np.int32), dataset.num_classes)


_REPORTED: set[str] = set()


def _bad_image(name: str, reason: str, on_bad_image: str) -> None:
  """Fails with the file named, or reports it once per process and goes on."""
  if on_bad_image == 'skip':
    if name not in _REPORTED:
      _REPORTED.add(name)
      print(f'warning: skipping unreadable image {name} ({reason}); '
            f'data.on_bad_image=\'skip\'', file=sys.stderr, flush=True)
    return
  raise UserError(f'unreadable image {name} ({reason}): fix or remove it, or set '
                  f'data.on_bad_image=\'skip\'.')


# --- batches -------------------------------------------------------------------------------

class _StepBatches:
  """step -> this process's slice of the global batch of that step (runs in grain workers).

  A record that cannot be read is replaced (data.on_bad_image='skip') by the next
  readable record in index order, so the batch stays full and a function of the step.
  """

  def __init__(self, records, preprocess: Preprocess | None, num_examples: int,
               global_batch_size: int, seed: int, process_index: int, process_count: int,
               random_flip: bool, on_bad_image: str):
    self.records = records
    self.preprocess = preprocess
    self.num_examples = num_examples
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.seed = seed
    self.process_index = process_index
    self.random_flip = random_flip
    self.on_bad_image = on_bad_image
    self._order = arrays.EpochOrder(num_examples, seed)

  def __getstate__(self):
    state = dict(self.__dict__)
    state['_order'] = arrays.EpochOrder(self.num_examples, self.seed)  # no cached permutations
    return state

  def indices(self, step: int) -> np.ndarray:
    return arrays.batch_indices(self._order, step, self.global_batch_size, self.process_index,
                              self.local_batch_size)

  def _read(self, index: int) -> dict[str, Any]:
    for k in range(self.num_examples):
      candidate = (index + k) % self.num_examples
      try:
        return self.records[candidate]
      except BadImageError as e:
        _bad_image(e.name, e.reason, self.on_bad_image)
    raise UserError('no image of the dataset could be read.')

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    offset = self.process_index * self.local_batch_size  # this slice's place in the batch
    images, labels = [], []
    for k, index in enumerate(self.indices(step)):
      record = self._read(int(index))
      image = record['image']
      if self.preprocess is not None:
        crop_rng = None
        if self.preprocess.crop == 'random':  # keyed by the position in the global batch
          crop_rng = np.random.default_rng([self.seed, step, 2, offset + k])
        image = self.preprocess(image, crop_rng)
      images.append(image)
      labels.append(record['label'])
    images = np.stack(images).astype(np.float32)  # (B_local, H, W, C)
    if self.random_flip:
      flips = arrays.batch_flips(self.seed, step, self.global_batch_size, self.process_index,
                               self.local_batch_size)
      images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    return {'image': images, 'label': np.array(labels, np.int32),
            'index': np.arange(offset, offset + self.local_batch_size, dtype=np.int32)}


class GrainBatchSource:
  """The deterministic global batch order, read with grain and sliced to this process.

  `batch(step)` serves the steps in order from a grain iterator that prepares the next
  `prefetch` batches in threads (and `num_workers` processes) while the train step runs;
  any other step (a resumed run, a test) restarts the iterator at that step.

  Args:
    dataset: a RecordDataset, or an in-memory ArrayDataset (read as it is).
    global_batch_size: the batch over all processes.
    seed: the run's seed.
    process_index, process_count: this process's place among all processes.
    random_flip: horizontal flips, drawn as gen_jax.data.arrays.BatchSource draws them.
    num_workers: grain worker processes (0: threads of this process only).
    prefetch: batches prepared ahead per reader (also its thread count).
    on_bad_image: 'fail' or 'skip' (with the file named) for undecodable records.
  """

  def __init__(self, dataset, global_batch_size: int, seed: int, process_index: int = 0,
               process_count: int = 1, random_flip: bool = False, num_workers: int = 0,
               prefetch: int = 4, on_bad_image: str = 'fail'):
    if global_batch_size % process_count:
      raise UserError(f'training.batch_size={global_batch_size} does not divide by the '
                      f'{process_count} processes.')
    if on_bad_image not in BAD_IMAGE_POLICIES:
      raise UserError(f"data.on_bad_image must be 'fail' or 'skip', not {on_bad_image!r}.")
    if num_workers < 0 or prefetch < 1:
      raise UserError(f'data.num_workers must be >= 0 and data.prefetch_batches >= 1, got '
                      f'{num_workers} and {prefetch}.')
    self.dataset = dataset
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self.random_flip = random_flip
    self.num_workers = num_workers
    self.prefetch = prefetch
    self.on_bad_image = on_bad_image
    if isinstance(dataset, arrays.ArrayDataset):
      records, preprocess = ArrayRecords(dataset), None
    else:
      records, preprocess = dataset.records, dataset.preprocess
    self._batches = _StepBatches(records, preprocess, len(dataset), global_batch_size, seed,
                                 process_index, process_count, random_flip, on_bad_image)
    self._state = {'iterator': None}  # shared with the finalizer, which closes it
    self._next_step = None
    weakref.finalize(self, _close_iterator, self._state)

  def with_seed(self, seed: int) -> 'GrainBatchSource':
    """The same source with another seed (vmapped trials' own batch orders)."""
    return GrainBatchSource(self.dataset, self.global_batch_size, seed, self.process_index,
                            self.process_count, self.random_flip, self.num_workers,
                            self.prefetch, self.on_bad_image)

  def indices(self, step: int) -> np.ndarray:
    """Dataset indices of this process's slice of the global batch of `step`."""
    return self._batches.indices(step)

  def _open(self, step: int) -> None:
    import grain  # pylint: disable=g-import-not-at-top
    from absl import flags  # pylint: disable=g-import-not-at-top
    if not flags.FLAGS.is_parsed():
      # grain 0.2.18 reads its absl flags when it starts workers; outside launch.py (tests,
      # benchmarks) nobody parsed them, so take the defaults.
      flags.FLAGS.mark_as_parsed()
    _close_iterator(self._state)
    steps = grain.MapDataset.range(step, step + 2**40).map(self._batches)
    iter_ds = steps.to_iter_dataset(grain.ReadOptions(num_threads=self.prefetch,
                                                      prefetch_buffer_size=self.prefetch))
    if self.num_workers:
      iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self.num_workers, per_worker_buffer_size=self.prefetch))
    self._state['iterator'] = iter(iter_ds)
    self._next_step = step

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's slice of the global batch of `step` (as gen_jax.data.arrays.BatchSource).

    Returns:
      {'image': (B_local, H, W, C) float32, 'label': (B_local,) int32,
       'index': (B_local,) int32 position of each example in the global batch}.
    """
    if self._state['iterator'] is None or step != self._next_step:
      self._open(step)
    out = next(self._state['iterator'])
    self._next_step = step + 1
    # Copies out of grain's shared memory, which is then released.
    return {key: np.array(value) for key, value in out.items()}

  def close(self) -> None:
    """Stops the workers (also done when the source is garbage collected or at exit)."""
    _close_iterator(self._state)
    self._next_step = None


def _close_iterator(state: dict) -> None:
  iterator, state['iterator'] = state.get('iterator'), None
  if iterator is not None and hasattr(iterator, 'close'):
    iterator.close()
