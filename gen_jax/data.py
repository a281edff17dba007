"""Datasets as in-memory arrays, and a deterministic, resumable, per-process batch order.

Datasets:
  * 'digits': scikit-learn's shipped 8x8 handwritten digits (1797 images, no network,
    no TensorFlow). Split: 'train' = the first 1500 images, 'test' = the last 297.
  * 'folder:PATH': PNG / JPEG files under PATH (one split, 'train'), labels from the
    subfolder names when `data.labels_from_subfolders` (gen_jax.input_pipeline).
  * 'fashion_mnist', 'mnist': tensorflow-datasets' prepared copy when there is one (as
    below), else the four IDX files (gen_jax.idx_files; gzipped or not) in `data.data_dir`
    or where a system package puts them (Debian's dataset-fashion-mnist:
    /usr/share/datasets/fashion-mnist; no package ships MNIST). Splits 'train' (60000) and
    'test' (10000). Never downloaded: with neither, one line names both ways to get them.
  * any other name: a tensorflow-datasets dataset, loaded with `download=False` from
    `data.data_dir`. The memory loader decodes it through TensorFlow (the `tfds` extra);
    the grain loader reads ArrayRecord files without it.

Loaders (`data.loader`): 'memory' holds the split as float32 arrays (BatchSource);
'grain' reads it record by record with grain (gen_jax.input_pipeline.GrainBatchSource),
for splits larger than memory; 'auto' takes grain when the training split would take more
than `data.max_memory_bytes` as float32. Both give the same batches for the same seed.
The embedded datasets and those read from IDX files are arrays under either loader.

Images are float32 in [-1, 1], shape (N, H, W, C), resized to `data.image_size`.

Batch order: the global batch of step s holds the samples at stream positions
s*B .. s*B+B-1 of an endless stream of epochs, each epoch a permutation drawn from
(seed, epoch). The data position is therefore a function of the step, which the
checkpoint holds, so a resumed run reads exactly the batches it would have read.
Every process builds the same order and keeps only its own slice of each global batch.
"""

import dataclasses
import importlib.util
import os
from typing import Callable

import numpy as np

from gen_jax import idx_files
from gen_jax.errors import UserError

DIGITS_TRAIN_SIZE = 1500  # digits 'train' = images [0, 1500), 'test' = [1500, 1797).
FOLDER_PREFIX = 'folder:'  # data.dataset='folder:PATH': an image folder
LOADERS = ('memory', 'grain', 'auto')


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A whole split in memory."""
  images: np.ndarray  # (N, H, W, C) float32 in [-1, 1]
  labels: np.ndarray  # (N,) int32
  num_classes: int

  def __len__(self) -> int:
    return self.images.shape[0]

  @property
  def image_shape(self) -> tuple[int, ...]:
    """(H, W, C) of an image ((2,) for ring8's points)."""
    return tuple(self.images.shape[1:])


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of (N, H, W, C) float images with Pillow."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if images.shape[1] == size and images.shape[2] == size:
    return images
  out = np.empty((images.shape[0], size, size, images.shape[3]), np.float32)
  for i, image in enumerate(images):
    for c in range(images.shape[3]):
      out[i, :, :, c] = np.asarray(
          Image.fromarray(image[:, :, c], mode='F').resize((size, size), Image.BILINEAR))
  return out


def _to_model_range(images: np.ndarray, size: int) -> np.ndarray:
  """(N, H, W, C) float32 images in [0, 1], resized to `size` and scaled to [-1, 1].

  In place where the resize returns its input: a split can be hundreds of MB as float32.
  """
  images = _resize(images, size)
  np.clip(images, 0.0, 1.0, out=images)
  images *= 2.0
  images -= 1.0
  return images


def _load_digits(split: str, image_size: int, data_dir: str) -> ArrayDataset:
  del data_dir  # Shipped with scikit-learn.
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = digits.images.astype(np.float32)[..., None] / 16.0  # (1797, 8, 8, 1) in [0, 1]
  labels = digits.target.astype(np.int32)
  if split == 'train':
    images, labels = images[:DIGITS_TRAIN_SIZE], labels[:DIGITS_TRAIN_SIZE]
  elif split == 'test':
    images, labels = images[DIGITS_TRAIN_SIZE:], labels[DIGITS_TRAIN_SIZE:]
  elif split != 'all':
    raise UserError(f"digits has splits 'train', 'test' and 'all', not {split!r}.")
  images = _to_model_range(images, image_size)
  return ArrayDataset(images=images, labels=labels, num_classes=10)


def _load_ring8(split: str, image_size: int, data_dir: str) -> ArrayDataset:
  """The 2-d ring of 8 Gaussians (GAN mode-collapse benchmark), see gen_jax.toy_data."""
  from gen_jax import toy_data  # pylint: disable=g-import-not-at-top
  return toy_data.load_ring8(split, image_size, data_dir)


# Datasets that ship with the code (no download). Other families register theirs here.
EMBEDDED_DATASETS: dict[str, Callable[[str, int, str], ArrayDataset]] = {
    'digits': _load_digits,
    'ring8': _load_ring8,  # (N, 2) points, not images
}


class TfdsNotPrepared(UserError):
  """tfds knows the dataset but has no copy of it prepared (for this loader)."""


TFDS_EXTRA_HINT = ('pip install -e ".[tfds]" adds it (tensorflow-cpu on Linux x86-64, '
                   'tensorflow elsewhere)')


def import_tensorflow(what: str):
  """TensorFlow, which tfds needs to decode most datasets; one line naming the extra when
  this install has none (the base install does not: it has no wheels for every platform).

  Args:
    what: what needs it, for the message.
  Returns:
    The tensorflow module.
  """
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        f'{what} is decoded through TensorFlow, which this install does not have: '
        f'{TFDS_EXTRA_HINT}; or prepare it as ArrayRecord (tfds build --file_format='
        f'array_record) and read it with data.loader=\'grain\', which needs no TensorFlow.'
    ) from None
  return tf


def _load_tfds(name: str, split: str, image_size: int, data_dir: str) -> ArrayDataset:
  """Loads a prepared tfds image dataset fully into memory (never downloads)."""
  tf = import_tensorflow(f'tfds dataset {name!r} with data.loader=\'memory\'')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # Keep TensorFlow off the accelerators.
  data_dir = data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(
        f"unknown dataset {name!r}: use 'digits' or a tensorflow-datasets name "
        f"such as 'mnist' or 'cifar10'.") from None
  prepare_hint = (f"prepare it with `tfds build {name} --data_dir=DIR` on a machine with "
                  f"network access and pass --config.data.data_dir=DIR.")
  try:
    dataset = tfds.load(name, split=split, data_dir=data_dir, download=False)
  except AssertionError:  # tfds' way of saying that nothing is prepared there
    raise TfdsNotPrepared(f"tfds dataset {name!r} is not prepared in "
                          f"{builder.data_dir_root}: {prepare_hint}") from None
  except ValueError as e:
    raise UserError(f"tfds dataset {name!r} cannot load split {split!r} ({e}).") from None
  if 'image' not in dataset.element_spec:
    raise UserError(f"tfds dataset {name!r} has no 'image' feature; gen_jax needs images.")
  has_label = 'label' in dataset.element_spec
  dataset = dataset.map(lambda ex: {'image': ex['image'],
                                    'label': ex['label'] if has_label else tf.constant(0)})
  # Chunks of 4096 rather than batch_size=-1, which needs a known cardinality.
  chunks = list(tfds.as_numpy(dataset.batch(4096)))
  images = np.concatenate([c['image'] for c in chunks])  # (N, H, W, C) uint8
  labels = np.concatenate([c['label'] for c in chunks]).astype(np.int32)
  if images.ndim == 3:
    images = images[..., None]
  label_feature = builder.info.features['label'] if has_label else None
  num_classes = int(getattr(label_feature, 'num_classes', 0) or 0)
  images = _to_model_range(images.astype(np.float32) / 255.0, image_size)
  return ArrayDataset(images=images, labels=labels, num_classes=num_classes)


@dataclasses.dataclass(frozen=True)
class IdxSource:
  """Where the IDX files of a dataset may be besides `data.data_dir`."""
  system_dir: str  # where a system package puts them ('': no package ships them)
  package: str  # that package, for the message ('': none)
  num_classes: int = 10


# Datasets that tfds knows and that also ship as IDX files, read when tfds has no prepared
# copy. Debian puts datasets in /usr/share/datasets/<name>; `apt-cache search mnist` finds
# only Fashion-MNIST.
IDX_DATASETS: dict[str, IdxSource] = {
    'fashion_mnist': IdxSource('/usr/share/datasets/fashion-mnist', 'dataset-fashion-mnist'),
    'mnist': IdxSource('', ''),
}


def _load_tfds_or_idx(name: str, split: str, image_size: int,
                      data_dir: str) -> ArrayDataset:
  """A dataset of IDX_DATASETS: tfds' prepared copy when there is one, else its IDX files.

  Whether tfds has it is asked of tfds.load itself (not of the files on disk), so that
  tfds.testing.mock_data, which patches the loading, stands for a prepared copy.
  """
  has_tensorflow = importlib.util.find_spec('tensorflow') is not None
  if has_tensorflow:
    try:
      return _load_tfds(name, split, image_size, data_dir)
    except TfdsNotPrepared:
      pass  # the IDX files, below
  # Without TensorFlow a prepared tfds copy cannot be decoded; the IDX files hold the same.
  source = IDX_DATASETS[name]
  if split not in idx_files.SPLIT_FILES:
    raise UserError(f"{name} read from IDX files has the splits "
                    f"{' and '.join(map(repr, idx_files.SPLIT_FILES))}, not {split!r}.")
  paths = idx_files.find_split(split, [data_dir, source.system_dir])
  if paths is None:
    if not has_tensorflow and _tfds_is_prepared(name, data_dir):
      import_tensorflow(f'tfds dataset {name!r} with data.loader=\'memory\'')  # raises
    raise UserError(_no_idx_files_message(name, split, data_dir, source, has_tensorflow))
  images, labels = idx_files.read_split(*paths)  # (N, H, W) uint8, (N,) uint8
  if labels.size and labels.max() >= source.num_classes:
    raise UserError(f'{paths[1]}: label {labels.max()} is not one of {name}\'s '
                    f'{source.num_classes} classes 0..{source.num_classes - 1}.')
  _say(f'data: {name} {split} from the IDX files {paths[0]} and {paths[1]} '
       f'({len(labels)} images).')
  images = images[..., None].astype(np.float32)  # (N, H, W, 1)
  images /= 255.0  # in place: the float32 training split is 188 MB at 28x28
  images = _to_model_range(images, image_size)
  return ArrayDataset(images=images, labels=labels.astype(np.int32),
                      num_classes=source.num_classes)


def _tfds_is_prepared(name: str, data_dir: str) -> bool:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder(name, data_dir=data_dir or None).is_prepared()


def _no_idx_files_message(name: str, split: str, data_dir: str, source: IdxSource,
                          has_tensorflow: bool) -> str:
  """The one line for a dataset with neither a prepared tfds copy nor IDX files."""
  images, labels = idx_files.SPLIT_FILES[split]
  where = (' or '.join(d for d in (data_dir, source.system_dir) if d)
           or 'data.data_dir (not set)')
  all_four = ', '.join(stem for stems in idx_files.SPLIT_FILES.values() for stem in stems)
  routes = [f'`apt-get install {source.package}`'] if source.package else []
  routes += [f'put the four IDX files ({all_four}; .gz or not) in DIR and pass '
             f'--config.data.data_dir=DIR',
             f'run `tfds build {name} --data_dir=DIR` on a machine with network access and '
             f'pass --config.data.data_dir=DIR'
             + ('' if has_tensorflow else f' (tfds decodes it through TensorFlow: '
                                          f'{TFDS_EXTRA_HINT})')]
  return (f'{name} {split!r} is neither prepared for tfds (in '
          f'{data_dir or "~/tensorflow_datasets"}) nor in IDX files ({images}[.gz] and '
          f'{labels}[.gz]) in {where}: {", or ".join(routes)}.')


def load_dataset(data_config, split: str) -> ArrayDataset:
  """Loads `split` of `data_config.dataset` as arrays.

  Args:
    data_config: the config's `data` block.
    split: split name ('train', 'test', or a tfds split expression).
  Returns:
    The split, with images in [-1, 1] resized to `data_config.image_size`.
  """
  name = data_config.dataset
  if data_config.image_size < 1:
    raise UserError(f'data.image_size must be positive, got {data_config.image_size}.')
  if name.startswith(FOLDER_PREFIX):
    from gen_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    records = input_pipeline.folder_dataset(_folder_split(name, split), data_config)
    dataset = input_pipeline.decode_all(records, data_config.get('on_bad_image', 'fail'))
  elif name in EMBEDDED_DATASETS:
    dataset = EMBEDDED_DATASETS[name](split, data_config.image_size, data_config.data_dir)
  elif name in IDX_DATASETS:
    dataset = _load_tfds_or_idx(name, split, data_config.image_size, data_config.data_dir)
  else:
    dataset = _load_tfds(name, split, data_config.image_size, data_config.data_dir)
  if len(dataset) == 0:
    raise UserError(f'split {split!r} of {name!r} is empty.')
  return dataset


def load_held_out(data_config, max_examples: int = 0) -> ArrayDataset:
  """The held-out split (`data.eval_split`), its first `max_examples` (0: all of it)."""
  held_out = load_dataset(data_config, data_config.eval_split)
  n = max_examples or len(held_out)
  return ArrayDataset(held_out.images[:n], held_out.labels[:n], held_out.num_classes)


def _folder_split(name: str, split: str) -> str:
  """The directory of a folder dataset's split: the folder itself ('train' or 'all')."""
  root = os.path.expanduser(name[len(FOLDER_PREFIX):])
  if split not in ('train', 'all'):
    raise UserError(f"an image folder has one split, 'train' (all its images), not "
                    f"{split!r}; set data.train_split='train' (and eval.split / "
                    f"data.eval_split to 'train', or eval.floor=False).")
  return root


def choose_loader(data_config, split: str) -> tuple[str, str]:
  """('memory' or 'grain', why) for `split` under `data.loader`.

  'auto' takes grain when the split, as float32 images at `data.image_size`, would take
  more than `data.max_memory_bytes`, or for random crops; embedded datasets are always in
  memory, and so are those of IDX_DATASETS that tfds has not prepared (their IDX files
  hold at most 60000 28x28 images: 188 MB as float32).
  """
  loader = data_config.get('loader', 'memory')
  if loader not in LOADERS:
    raise UserError(f"data.loader must be 'memory', 'grain' or 'auto', not {loader!r}.")
  if loader != 'auto':
    return loader, f'data.loader={loader!r}'
  name = data_config.dataset
  if name in EMBEDDED_DATASETS:
    return 'memory', f'{name} is embedded'
  count, channels = _split_size(data_config, split)
  if name in IDX_DATASETS and not count:  # tfds has no copy: the IDX files, as arrays
    return 'memory', f'{name} has no prepared tfds copy and is read from its IDX files'
  if data_config.get('crop', 'center') == 'random':
    return 'grain', "data.crop='random' crops each image as it is read"
  size = data_config.image_size
  nbytes = count * size * size * channels * 4
  limit = data_config.get('max_memory_bytes', 4 * 2**30)
  why = (f'{name} {split}: {count} images, {nbytes / 2**30:.2f} GiB as float32 at '
         f'{size}x{size}, data.max_memory_bytes {limit / 2**30:.2f} GiB')
  return ('grain' if nbytes > limit else 'memory'), why


def _split_size(data_config, split: str) -> tuple[int, int]:
  """(number of images, channels) of a split, without decoding it."""
  name = data_config.dataset
  if name.startswith(FOLDER_PREFIX):
    from gen_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    paths, _, _ = input_pipeline.list_folder(_folder_split(name, split),
                                             data_config.get('labels_from_subfolders', False))
    return len(paths), 3
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    info = tfds.builder(name, data_dir=data_config.data_dir or None).info
    count = info.splits[split].num_examples
  except Exception:  # pylint: disable=broad-except
    # Unknown or unprepared: size 0, so the memory loader reports it in its words.
    return 0, 3
  shape = info.features['image'].shape if 'image' in info.features else (0, 0, 3)
  return int(count), int(shape[-1] or 3)


def load_train_data(data_config):
  """The training split, in memory or as records, by `data.loader`.

  Returns:
    An ArrayDataset (memory; also the embedded datasets under grain, which are arrays
    already, and those of IDX_DATASETS without an ArrayRecord tfds copy), or a
    gen_jax.input_pipeline.RecordDataset read by grain. Both have `image_shape`,
    `num_classes` and `len()`.
  """
  split = data_config.train_split
  loader, why = choose_loader(data_config, split)
  if data_config.get('loader', 'memory') == 'auto' and data_config.dataset not in EMBEDDED_DATASETS:
    _say(f'data: {loader} loader, data.loader=\'auto\' ({why}).')
  if loader == 'memory' or data_config.dataset in EMBEDDED_DATASETS:
    if loader == 'memory' and data_config.get('crop', 'center') == 'random':
      raise UserError("data.crop='random' needs data.loader='grain' (the memory loader "
                      "holds center crops).")
    return load_dataset(data_config, split)
  from gen_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  if data_config.image_size < 1:
    raise UserError(f'data.image_size must be positive, got {data_config.image_size}.')
  name = data_config.dataset
  if name.startswith(FOLDER_PREFIX):
    dataset = input_pipeline.folder_dataset(_folder_split(name, split), data_config)
  else:
    try:
      dataset = input_pipeline.tfds_dataset(name, split, data_config)
    except TfdsNotPrepared:
      if name not in IDX_DATASETS:
        raise
      # No ArrayRecord copy: the arrays of the memory loader, read with grain as the
      # embedded datasets are.
      return load_dataset(data_config, split)
  _say(f'data: reading {dataset.description} with grain, '
       f'{data_config.get("num_workers", 0)} worker process(es).')
  return dataset


def _say(message: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(message, flush=True)


def train_source(dataset, config):
  """The training batch order of a run: its global batch, seed, flips, this process.

  A RecordDataset, or any dataset under data.loader='grain', is read with grain
  (gen_jax.input_pipeline.GrainBatchSource); an ArrayDataset otherwise by BatchSource.
  Both give the same batches.
  """
  import jax  # pylint: disable=g-import-not-at-top
  d = config.data
  args = (dataset, config.training.batch_size, config.seed, jax.process_index(),
          jax.process_count(), d.random_flip)
  if isinstance(dataset, ArrayDataset) and d.get('loader', 'memory') != 'grain':
    return BatchSource(*args)
  from gen_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline.GrainBatchSource(*args, num_workers=d.get('num_workers', 0),
                                         prefetch=d.get('prefetch_batches', 4),
                                         on_bad_image=d.get('on_bad_image', 'fail'))


class EpochOrder:
  """Epoch e of a dataset of n examples is the permutation drawn from (seed, e)."""

  def __init__(self, num_examples: int, seed: int):
    self.num_examples = num_examples
    self.seed = seed
    self._permutations: dict[int, np.ndarray] = {}

  def permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      if len(self._permutations) > 4:
        self._permutations.clear()
      rng = np.random.default_rng([self.seed, epoch])
      self._permutations[epoch] = rng.permutation(self.num_examples)
    return self._permutations[epoch]


def batch_indices(order: EpochOrder, step: int, global_batch_size: int, process_index: int,
                  local_batch_size: int) -> np.ndarray:
  """Dataset indices of one process's slice of the global batch of `step`."""
  start = step * global_batch_size + process_index * local_batch_size
  positions = np.arange(start, start + local_batch_size)  # stream positions
  epochs, offsets = np.divmod(positions, order.num_examples)
  return np.array([order.permutation(int(e))[o] for e, o in zip(epochs, offsets)])


def batch_flips(seed: int, step: int, global_batch_size: int, process_index: int,
                local_batch_size: int) -> np.ndarray:
  """(B_local,) bool: which images of this slice of step's global batch are flipped."""
  rng = np.random.default_rng([seed, step, 1])
  flips = rng.random(global_batch_size) < 0.5  # decided globally, sliced below
  return flips[process_index * local_batch_size:][:local_batch_size]


class BatchSource:
  """The deterministic global batch order, sliced to this process.

  Args:
    dataset: the split to read.
    global_batch_size: the batch over all processes.
    seed: the run's seed; epoch e is permuted by a generator seeded with (seed, e).
    process_index, process_count: this process's place among all processes.
    random_flip: flip images horizontally with probability 1/2 (decided per sample
      from (seed, step)).
  """

  def __init__(self, dataset: ArrayDataset, global_batch_size: int, seed: int,
               process_index: int = 0, process_count: int = 1, random_flip: bool = False):
    if global_batch_size % process_count:
      raise UserError(f'training.batch_size={global_batch_size} does not divide by the '
                      f'{process_count} processes.')
    self.dataset = dataset
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self.random_flip = random_flip
    self._order = EpochOrder(len(dataset), seed)

  def with_seed(self, seed: int) -> 'BatchSource':
    """The same source with another seed (vmapped trials' own batch orders)."""
    return BatchSource(self.dataset, self.global_batch_size, seed, self.process_index,
                       self.process_count, self.random_flip)

  def indices(self, step: int) -> np.ndarray:
    """Dataset indices of this process's slice of the global batch of `step`."""
    return batch_indices(self._order, step, self.global_batch_size, self.process_index,
                         self.local_batch_size)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's slice of the global batch of `step`.

    Returns:
      {'image': (B_local, H, W, C) float32, 'label': (B_local,) int32,
       'index': (B_local,) int32 position of each example in the global batch}.
      Per-example random draws are keyed by 'index', so they do not depend on how
      the batch is split over devices and processes.
    """
    idx = self.indices(step)
    offset = self.process_index * self.local_batch_size
    images = self.dataset.images[idx]
    if self.random_flip:
      flips = batch_flips(self.seed, step, self.global_batch_size, self.process_index,
                          self.local_batch_size)
      images = np.where(flips[:, None, None, None], images[:, :, ::-1], images)
    return {'image': images, 'label': self.dataset.labels[idx],
            'index': np.arange(offset, offset + self.local_batch_size, dtype=np.int32)}
