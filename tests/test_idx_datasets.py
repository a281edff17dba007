"""IDX files (gen_jax.data.idx_files) and the datasets read from them: 'fashion_mnist' from
Debian's dataset-fashion-mnist or data.data_dir, and 'mnist' from data.data_dir."""

import gzip
import os
import struct

import ml_collections
import numpy as np
import pytest

from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.data import grain_records
from gen_jax.data import idx_files
from gen_jax.platform.errors import UserError
from tests.conftest import TINY_DDPM, read_jsonl, run_launch

DEBIAN_DIR = datasets.IDX_DATASETS['fashion_mnist'].system_dir
needs_debian = pytest.mark.skipif(
    not os.path.isdir(DEBIAN_DIR),
    reason=f'{DEBIAN_DIR} is absent (apt-get install dataset-fashion-mnist)')


def write_idx(path, array, magic, gz=False):
  """`array` (uint8) as an IDX file with header `magic`; gzipped when `gz`."""
  array = np.asarray(array, np.uint8)
  raw = struct.pack('>I', magic) + struct.pack(f'>{array.ndim}I', *array.shape)
  raw += array.tobytes()
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(raw)
  return str(path)


def write_split_files(directory, split, images, labels, gz=False):
  """The two IDX files of `split` under their usual names in `directory`."""
  os.makedirs(directory, exist_ok=True)
  stems = idx_files.SPLIT_FILES[split]
  suffix = '.gz' if gz else ''
  return (write_idx(os.path.join(directory, stems[0] + suffix), images,
                    idx_files.IMAGES_MAGIC, gz),
          write_idx(os.path.join(directory, stems[1] + suffix), labels,
                    idx_files.LABELS_MAGIC, gz))


def fake_images(n, seed=0, size=28):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)  # (N, H, W)
  images[0] = 0  # both ends of the range, exactly
  images[1] = 255
  return images, (np.arange(n) % 10).astype(np.uint8)


def write_fake_dataset(directory, n_train=40, n_test=20):
  """All four files: train gzipped, test raw (both name forms in one folder)."""
  train = fake_images(n_train, seed=1)
  test = fake_images(n_test, seed=2)
  write_split_files(directory, 'train', *train, gz=True)
  write_split_files(directory, 'test', *test, gz=False)
  return train, test


def data_config(dataset='fashion_mnist', size=28, data_dir='', **kw):
  fields = dict(dataset=dataset, image_size=size, data_dir=data_dir, train_split='train',
                eval_split='test', random_flip=False, loader='auto', num_workers=0,
                prefetch_batches=2, labels_from_subfolders=False, on_bad_image='fail',
                resize='bilinear', crop='center', max_memory_bytes=4 * 2**30)
  fields.update(kw)
  return ml_collections.ConfigDict(fields)


def one_line(excinfo) -> str:
  message = str(excinfo.value)
  assert '\n' not in message, message
  return message


# --- the parser ----------------------------------------------------------------------------

@pytest.mark.parametrize('gz', [False, True], ids=['raw', 'gzipped'])
def test_a_known_array_reads_back_exactly(tmp_path, gz):
  images, labels = fake_images(7, size=5)
  images[:, 0, :] = np.arange(5)  # not symmetric: a transposed read would show
  paths = write_split_files(str(tmp_path), 'train', images, labels, gz=gz)
  assert paths[0].endswith('.gz') == gz
  read_images, read_labels = idx_files.read_split(*paths)
  assert read_images.dtype == np.uint8 and read_images.shape == (7, 5, 5)
  np.testing.assert_array_equal(read_images, images)
  np.testing.assert_array_equal(read_labels, labels)
  np.testing.assert_array_equal(idx_files.read_idx(paths[1], idx_files.LABELS_MAGIC), labels)


def test_bad_magic_number_is_one_line_naming_the_file(tmp_path):
  # A labels file where the images should be.
  path = write_idx(tmp_path / 'train-images-idx3-ubyte', np.zeros(4), idx_files.LABELS_MAGIC)
  with pytest.raises(UserError, match='not an IDX image file') as excinfo:
    idx_files.read_idx(path, idx_files.IMAGES_MAGIC)
  message = one_line(excinfo)
  assert path in message and '0x00000801' in message and '0x00000803' in message
  (tmp_path / 'junk').write_bytes(b'<html>not found</html>')
  with pytest.raises(UserError, match='not an IDX label file'):
    idx_files.read_idx(str(tmp_path / 'junk'), idx_files.LABELS_MAGIC)


@pytest.mark.parametrize('gz', [False, True], ids=['raw', 'gzipped'])
def test_truncated_file_is_one_line_naming_the_file(tmp_path, gz):
  path = write_idx(tmp_path / 'images', np.zeros((3, 4, 4)), idx_files.IMAGES_MAGIC)
  raw = open(path, 'rb').read()[:-5]  # the header promises 48 bytes of data; 43 are left
  (tmp_path / 'images').write_bytes(gzip.compress(raw) if gz else raw)
  with pytest.raises(UserError, match='truncated IDX file') as excinfo:
    idx_files.read_idx(path, idx_files.IMAGES_MAGIC)
  assert path in one_line(excinfo) and '(3, 4, 4)' in one_line(excinfo)
  (tmp_path / 'header').write_bytes(raw[:10])  # cut inside the dimensions
  with pytest.raises(UserError, match='truncated IDX file'):
    idx_files.read_idx(str(tmp_path / 'header'), idx_files.IMAGES_MAGIC)


def test_truncated_gzip_stream_is_one_line(tmp_path):
  path = write_idx(tmp_path / 'labels.gz', np.arange(1000) % 10, idx_files.LABELS_MAGIC,
                   gz=True)
  raw = open(path, 'rb').read()
  (tmp_path / 'labels.gz').write_bytes(raw[:len(raw) // 2])
  with pytest.raises(UserError, match='corrupt or truncated gzip file') as excinfo:
    idx_files.read_idx(path, idx_files.LABELS_MAGIC)
  assert path in one_line(excinfo)


def test_image_and_label_count_mismatch_is_one_line(tmp_path):
  images, _ = fake_images(5, size=4)
  paths = write_split_files(str(tmp_path), 'test', images, np.zeros(4))
  with pytest.raises(UserError, match='4 labels for the 5 images') as excinfo:
    idx_files.read_split(*paths)
  assert paths[0] in one_line(excinfo) and paths[1] in one_line(excinfo)


# --- the datasets --------------------------------------------------------------------------

def test_data_dir_is_preferred_over_the_debian_folder(tmp_path):
  (train_images, train_labels), (test_images, _) = write_fake_dataset(str(tmp_path))
  train = datasets.load_dataset(data_config(data_dir=str(tmp_path)), 'train')
  assert len(train) == 40  # not the 60000 of the Debian folder
  assert train.images.shape == (40, 28, 28, 1) and train.images.dtype == np.float32
  # At the native 28x28 the values are the bytes, scaled from 0..255 to [-1, 1].
  np.testing.assert_allclose(train.images[..., 0], train_images / 127.5 - 1.0, atol=1e-6)
  assert train.images.min() == -1.0 and train.images.max() == 1.0
  np.testing.assert_array_equal(train.labels, train_labels)
  assert train.labels.dtype == np.int32 and train.num_classes == 10
  test = datasets.load_dataset(data_config(size=8, data_dir=str(tmp_path)), 'test')
  assert test.images.shape == (20, 8, 8, 1)  # resized as every dataset is
  small = arrays.resize(test_images[..., None].astype(np.float32) / 255.0, 8)
  np.testing.assert_allclose(test.images, np.clip(small, 0.0, 1.0) * 2.0 - 1.0, atol=1e-6)


def test_mnist_reads_idx_files_from_data_dir(tmp_path):
  write_fake_dataset(str(tmp_path))
  mnist = datasets.load_dataset(data_config('mnist', data_dir=str(tmp_path)), 'test')
  assert len(mnist) == 20 and mnist.num_classes == 10


def test_no_files_anywhere_is_one_line_naming_both_routes(tmp_path, monkeypatch):
  missing = str(tmp_path / 'no-such-package-dir')
  monkeypatch.setitem(datasets.IDX_DATASETS, 'fashion_mnist',
                      datasets.IdxSource(missing, 'dataset-fashion-mnist'))
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(UserError) as excinfo:
    datasets.load_dataset(data_config(data_dir=str(empty)), 'train')
  message = one_line(excinfo)
  for needle in ('apt-get install dataset-fashion-mnist', '--config.data.data_dir=DIR',
                 'tfds build fashion_mnist --data_dir=DIR', 'train-images-idx3-ubyte',
                 str(empty), missing):
    assert needle in message, message
  # MNIST has no Debian package: the message names no apt-get.
  with pytest.raises(UserError) as excinfo:
    datasets.load_dataset(data_config('mnist', data_dir=str(empty)), 'test')
  message = one_line(excinfo)
  assert 'apt-get' not in message and 'tfds build mnist' in message, message


def test_other_splits_and_bad_labels_are_one_line(tmp_path):
  write_fake_dataset(str(tmp_path))
  with pytest.raises(UserError, match="splits 'train' and 'test', not 'validation'") as e:
    datasets.load_dataset(data_config(data_dir=str(tmp_path)), 'validation')
  one_line(e)
  images, labels = fake_images(4)
  labels[2] = 10
  bad = str(tmp_path / 'bad')
  write_split_files(bad, 'test', images, labels)
  with pytest.raises(UserError, match='label 10 is not one of') as e:
    datasets.load_dataset(data_config(data_dir=bad), 'test')
  assert one_line(e).startswith(os.path.join(bad, 't10k-labels-idx1-ubyte'))


def test_loaders_auto_is_memory_and_grain_reads_the_arrays(tmp_path):
  write_fake_dataset(str(tmp_path))
  assert datasets.choose_loader(data_config(data_dir=str(tmp_path)), 'train')[0] == 'memory'
  grain_config = data_config(size=8, data_dir=str(tmp_path), loader='grain')
  in_memory = datasets.load_train_data(grain_config)  # no ArrayRecord copy: arrays, as digits
  assert isinstance(in_memory, arrays.ArrayDataset) and len(in_memory) == 40
  memory = arrays.BatchSource(in_memory, 16, seed=3, random_flip=True)
  grain = grain_records.GrainBatchSource(in_memory, 16, 3, 0, 1, True, num_workers=0,
                                          prefetch=2)
  try:
    for step in (0, 1, 2, 5):  # 40 / 16: step 2 straddles two epochs
      a, b = grain.batch(step), memory.batch(step)
      assert a.keys() == b.keys()
      for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  finally:
    grain.close()


# --- the real Debian files -----------------------------------------------------------------

@pytest.fixture(scope='module')
def debian_splits():
  config = data_config(data_dir='')
  return datasets.load_dataset(config, 'train'), datasets.load_dataset(config, 'test')


@needs_debian
def test_debian_fashion_mnist(debian_splits):
  train, test = debian_splits
  assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
  for split, per_class in ((train, 6000), (test, 1000)):
    assert split.images.dtype == np.float32 and split.labels.dtype == np.int32
    assert split.images.min() >= -1.0 and split.images.max() <= 1.0
    assert split.num_classes == 10
    # Fashion-MNIST is balanced: every class has exactly a tenth of each split.
    np.testing.assert_array_equal(np.bincount(split.labels, minlength=10), [per_class] * 10)
  # Read independently: the first label is the byte after the 8-byte labels header, the
  # first image the 784 bytes after the 16-byte images header.
  with gzip.open(os.path.join(DEBIAN_DIR, 'train-labels-idx1-ubyte.gz')) as f:
    magic, count = struct.unpack('>II', f.read(8))
    first_label = f.read(1)[0]
  assert (magic, count) == (0x801, 60000) and train.labels[0] == first_label
  with gzip.open(os.path.join(DEBIAN_DIR, 'train-images-idx3-ubyte.gz')) as f:
    f.read(16)
    first_image = np.frombuffer(f.read(28 * 28), np.uint8).reshape(28, 28)
  np.testing.assert_allclose(train.images[0, :, :, 0], first_image / 127.5 - 1.0, atol=1e-6)


@needs_debian
def test_ddpm_trains_on_debian_fashion_mnist(tmp_path):
  proc = run_launch([*TINY_DDPM, '--config.data.dataset=fashion_mnist',
                     '--config.data.image_size=8', '--config.training.num_steps=2',
                     f'--workdir={tmp_path / "run"}'])
  assert 'done: 2 steps' in proc.stdout, proc.stdout
  assert 'from the IDX files' in proc.stdout


# --- configs/classifier_fashion.py ---------------------------------------------------------

def test_classifier_fashion_config_trains_two_steps(tmp_path):
  from configs import classifier_fashion  # pylint: disable=g-import-not-at-top
  from experiments import programs  # pylint: disable=g-import-not-at-top
  config = classifier_fashion.get_config()
  assert (config.data.dataset, config.data.image_size) == ('fashion_mnist', 28)
  assert (config.training.batch_size, config.training.num_steps) == (128, 5000)
  write_fake_dataset(str(tmp_path / 'idx'), n_train=40, n_test=20)
  config.data.data_dir = str(tmp_path / 'idx')  # small files: the config, not the data
  config.training.batch_size = 8
  config.training.num_steps = 2
  config.training.log_every = 1
  config.training.eval_every = 2
  config.training.sample_every = 0
  config.training.async_checkpoints = False
  workdir = str(tmp_path / 'run')
  assert programs.run(config, workdir) == 'done'
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in metrics if 'train/loss' in m] == [1, 2]
  assert 0.0 <= [m for m in metrics if 'eval/accuracy' in m][-1]['eval/accuracy'] <= 1.0
