"""Datasets as in-memory arrays, and a deterministic, resumable, per-process batch order.

Datasets:
  * 'digits': scikit-learn's shipped 8x8 handwritten digits (1797 images, no network,
    no TensorFlow). Split: 'train' = the first 1500 images, 'test' = the last 297.
  * 'folder:PATH': PNG / JPEG files under PATH (one split, 'train'), labels from the
    subfolder names when `data.labels_from_subfolders` (gen_jax.data.grain_records).
  * 'fashion_mnist', 'mnist': tensorflow-datasets' prepared copy when there is one (as
    below), else the four IDX files (gen_jax.data.idx_files; gzipped or not) in `data.data_dir`
    or where a system package puts them (Debian's dataset-fashion-mnist:
    /usr/share/datasets/fashion-mnist; no package ships MNIST). Splits 'train' (60000) and
    'test' (10000). Never downloaded: with neither, one line names both ways to get them.
  * any other name: a tensorflow-datasets dataset, loaded with `download=False` from
    `data.data_dir`. The memory loader decodes it through TensorFlow (the `tfds` extra);
    the grain loader reads ArrayRecord files without it.

Loaders (`data.loader`): 'memory' holds the split as float32 arrays (its BatchSource);
'grain' reads it record by record with grain (gen_jax.data.grain_records.GrainBatchSource),
for splits larger than memory; 'auto' takes grain when the training split would take more
than `data.max_memory_bytes` as float32. Both give the same batches for the same seed.
The embedded datasets and those read from IDX files are arrays under either loader.

Images are float32 in [-1, 1], shape (N, H, W, C), resized to `data.image_size`.

Batch order: gen_jax.data.arrays (a function of the step, so a resume reads the same batches).
"""

import dataclasses
import importlib.util
import os
from typing import Callable

import numpy as np

from gen_jax.data import arrays
from gen_jax.data import grain_records
from gen_jax.data import idx_files
from gen_jax.data import tfds_access
from gen_jax.data import toy_data
from gen_jax.platform.errors import UserError

DIGITS_TRAIN_SIZE = 1500  # digits 'train' = images [0, 1500), 'test' = [1500, 1797).
FOLDER_PREFIX = 'folder:'  # data.dataset='folder:PATH': an image folder
LOADERS = ('memory', 'grain', 'auto')


def _load_digits(split: str, image_size: int, data_dir: str) -> arrays.ArrayDataset:
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
  images = arrays.to_model_range(images, image_size)
  return arrays.ArrayDataset(images=images, labels=labels, num_classes=10)


def _load_ring8(split: str, image_size: int, data_dir: str) -> arrays.ArrayDataset:
  """The 2-d ring of 8 Gaussians (GAN mode-collapse benchmark), see gen_jax.data.toy_data."""
  return toy_data.load_ring8(split, image_size, data_dir)


# Datasets that ship with the code (no download). Other families register theirs here.
EMBEDDED_DATASETS: dict[str, Callable[[str, int, str], arrays.ArrayDataset]] = {
    'digits': _load_digits,
    'ring8': _load_ring8,  # (N, 2) points, not images
}


def _load_tfds(name: str, split: str, image_size: int, data_dir: str) -> arrays.ArrayDataset:
  """Loads a prepared tfds image dataset fully into memory (never downloads)."""
  tf = tfds_access.import_tensorflow(f'tfds dataset {name!r} with data.loader=\'memory\'')
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
    raise tfds_access.TfdsNotPrepared(f"tfds dataset {name!r} is not prepared in "
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
  images = arrays.to_model_range(images.astype(np.float32) / 255.0, image_size)
  return arrays.ArrayDataset(images=images, labels=labels, num_classes=num_classes)


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
                      data_dir: str) -> arrays.ArrayDataset:
  """A dataset of IDX_DATASETS: tfds' prepared copy when there is one, else its IDX files.

  Whether tfds has it is asked of tfds.load itself (not of the files on disk), so that
  tfds.testing.mock_data, which patches the loading, stands for a prepared copy.
  """
  has_tensorflow = importlib.util.find_spec('tensorflow') is not None
  if has_tensorflow:
    try:
      return _load_tfds(name, split, image_size, data_dir)
    except tfds_access.TfdsNotPrepared:
      pass  # the IDX files, below
  # Without TensorFlow a prepared tfds copy cannot be decoded; the IDX files hold the same.
  source = IDX_DATASETS[name]
  if split not in idx_files.SPLIT_FILES:
    raise UserError(f"{name} read from IDX files has the splits "
                    f"{' and '.join(map(repr, idx_files.SPLIT_FILES))}, not {split!r}.")
  paths = idx_files.find_split(split, [data_dir, source.system_dir])
  if paths is None:
    if not has_tensorflow and _tfds_is_prepared(name, data_dir):
      tfds_access.import_tensorflow(f'tfds dataset {name!r} with data.loader=\'memory\'')  # raises
    raise UserError(_no_idx_files_message(name, split, data_dir, source, has_tensorflow))
  images, labels = idx_files.read_split(*paths)  # (N, H, W) uint8, (N,) uint8
  if labels.size and labels.max() >= source.num_classes:
    raise UserError(f'{paths[1]}: label {labels.max()} is not one of {name}\'s '
                    f'{source.num_classes} classes 0..{source.num_classes - 1}.')
  _say(f'data: {name} {split} from the IDX files {paths[0]} and {paths[1]} '
       f'({len(labels)} images).')
  images = images[..., None].astype(np.float32)  # (N, H, W, 1)
  images /= 255.0  # in place: the float32 training split is 188 MB at 28x28
  images = arrays.to_model_range(images, image_size)
  return arrays.ArrayDataset(images=images, labels=labels.astype(np.int32),
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
                                          f'{tfds_access.TFDS_EXTRA_HINT})')]
  return (f'{name} {split!r} is neither prepared for tfds (in '
          f'{data_dir or "~/tensorflow_datasets"}) nor in IDX files ({images}[.gz] and '
          f'{labels}[.gz]) in {where}: {", or ".join(routes)}.')


def load_dataset(data_config, split: str) -> arrays.ArrayDataset:
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
    records = grain_records.folder_dataset(_folder_split(name, split), data_config)
    dataset = grain_records.decode_all(records, data_config.on_bad_image)
  elif name in EMBEDDED_DATASETS:
    dataset = EMBEDDED_DATASETS[name](split, data_config.image_size, data_config.data_dir)
  elif name in IDX_DATASETS:
    dataset = _load_tfds_or_idx(name, split, data_config.image_size, data_config.data_dir)
  else:
    dataset = _load_tfds(name, split, data_config.image_size, data_config.data_dir)
  if len(dataset) == 0:
    raise UserError(f'split {split!r} of {name!r} is empty.')
  return dataset


def load_held_out(data_config, max_examples: int = 0) -> arrays.ArrayDataset:
  """The held-out split (`data.eval_split`), its first `max_examples` (0: all of it)."""
  held_out = load_dataset(data_config, data_config.eval_split)
  n = max_examples or len(held_out)
  return arrays.ArrayDataset(held_out.images[:n], held_out.labels[:n], held_out.num_classes)


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
  loader = data_config.loader
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
  if data_config.crop == 'random':
    return 'grain', "data.crop='random' crops each image as it is read"
  size = data_config.image_size
  nbytes = count * size * size * channels * 4
  limit = data_config.max_memory_bytes
  why = (f'{name} {split}: {count} images, {nbytes / 2**30:.2f} GiB as float32 at '
         f'{size}x{size}, data.max_memory_bytes {limit / 2**30:.2f} GiB')
  return ('grain' if nbytes > limit else 'memory'), why


def _split_size(data_config, split: str) -> tuple[int, int]:
  """(number of images, channels) of a split, without decoding it."""
  name = data_config.dataset
  if name.startswith(FOLDER_PREFIX):
    paths, _, _ = grain_records.list_folder(_folder_split(name, split),
                                             data_config.labels_from_subfolders)
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
    gen_jax.data.grain_records.RecordDataset read by grain. Both have `image_shape`,
    `num_classes` and `len()`.
  """
  split = data_config.train_split
  loader, why = choose_loader(data_config, split)
  if data_config.loader == 'auto' and data_config.dataset not in EMBEDDED_DATASETS:
    _say(f'data: {loader} loader, data.loader=\'auto\' ({why}).')
  if loader == 'memory' or data_config.dataset in EMBEDDED_DATASETS:
    if loader == 'memory' and data_config.crop == 'random':
      raise UserError("data.crop='random' needs data.loader='grain' (the memory loader "
                      "holds center crops).")
    return load_dataset(data_config, split)
  if data_config.image_size < 1:
    raise UserError(f'data.image_size must be positive, got {data_config.image_size}.')
  name = data_config.dataset
  if name.startswith(FOLDER_PREFIX):
    dataset = grain_records.folder_dataset(_folder_split(name, split), data_config)
  else:
    try:
      dataset = grain_records.tfds_dataset(name, split, data_config)
    except tfds_access.TfdsNotPrepared:
      if name not in IDX_DATASETS:
        raise
      # No ArrayRecord copy: the arrays of the memory loader, read with grain as the
      # embedded datasets are.
      return load_dataset(data_config, split)
  _say(f'data: reading {dataset.description} with grain, '
       f'{data_config.num_workers} worker process(es).')
  return dataset


def _say(message: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(message, flush=True)


def train_source(dataset, config):
  """The training batch order of a run: its global batch, seed, flips, this process.

  A RecordDataset, or any dataset under data.loader='grain', is read with grain
  (gen_jax.data.grain_records.GrainBatchSource); an ArrayDataset otherwise by BatchSource
  (gen_jax.data.arrays).
  Both give the same batches.
  """
  import jax  # pylint: disable=g-import-not-at-top
  d = config.data
  args = (dataset, config.training.batch_size, config.seed, jax.process_index(),
          jax.process_count(), d.random_flip)
  if isinstance(dataset, arrays.ArrayDataset) and d.loader != 'grain':
    return arrays.BatchSource(*args)
  return grain_records.GrainBatchSource(*args, num_workers=d.num_workers,
                                        prefetch=d.prefetch_batches,
                                        on_bad_image=d.on_bad_image)


