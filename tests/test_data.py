"""Embedded digits and the deterministic, per-process batch order."""

import ml_collections
import numpy as np
import pytest

from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.platform.errors import UserError


def digits_config(size=16):
  """The shared schema's data block (experiments/schema.py) for the digits, in memory."""
  from experiments import schema  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(dict(schema.get_schema().data.to_dict(), dataset='digits',
                                        image_size=size, data_dir='', loader='memory'))


def test_digits_splits_and_range():
  train = datasets.load_dataset(digits_config(), 'train')
  test = datasets.load_dataset(digits_config(), 'test')
  assert train.images.shape == (1500, 16, 16, 1) and test.images.shape == (297, 16, 16, 1)
  assert train.images.dtype == np.float32
  assert train.images.min() == pytest.approx(-1.0) and train.images.max() == pytest.approx(1.0)
  assert set(np.unique(train.labels)) == set(range(10)) and train.num_classes == 10
  native = datasets.load_dataset(digits_config(8), 'all')
  assert native.images.shape == (1797, 8, 8, 1)
  # At the native size the values are the shipped ones, scaled from 0..16 to [-1, 1].
  from sklearn.datasets import load_digits
  np.testing.assert_allclose(native.images[..., 0], load_digits().images / 8.0 - 1.0, atol=1e-6)


def test_unknown_digits_split():
  with pytest.raises(UserError, match='splits'):
    datasets.load_dataset(digits_config(), 'validation')


def make_source(n=10, batch=4, seed=0, process_index=0, process_count=1, flip=False):
  images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1))
  images[:, :, 0] += 100  # make left/right distinguishable for flips
  ds = arrays.ArrayDataset(images=images, labels=np.arange(n, dtype=np.int32), num_classes=n)
  return arrays.BatchSource(ds, batch, seed, process_index, process_count, flip)


def test_every_epoch_is_a_permutation_and_order_is_seeded():
  source = make_source(n=10, batch=4)
  stream = np.concatenate([source.batch(s)['label'] for s in range(5)])  # 20 = 2 epochs
  assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
  assert not np.array_equal(stream[:10], stream[10:])
  again = np.concatenate([make_source(n=10, batch=4).batch(s)['label'] for s in range(5)])
  np.testing.assert_array_equal(stream, again)
  other = np.concatenate([make_source(n=10, batch=4, seed=1).batch(s)['label']
                          for s in range(5)])
  assert not np.array_equal(stream, other)


def test_a_batch_depends_only_on_the_step():
  fresh = make_source()
  used = make_source()
  for s in range(7):
    used.batch(s)
  np.testing.assert_array_equal(fresh.batch(6)['label'], used.batch(6)['label'])


def test_processes_read_disjoint_slices_of_the_global_batch():
  whole = make_source(batch=8)
  parts = [make_source(batch=8, process_index=p, process_count=2) for p in range(2)]
  for step in range(3):
    full = whole.batch(step)
    halves = [p.batch(step) for p in parts]
    np.testing.assert_array_equal(np.concatenate([h['label'] for h in halves]), full['label'])
    np.testing.assert_array_equal(np.concatenate([h['index'] for h in halves]), np.arange(8))


def test_flips_are_seeded_and_split_consistently():
  whole = make_source(batch=8, flip=True).batch(3)['image']
  halves = [make_source(batch=8, process_index=p, process_count=2, flip=True).batch(3)['image']
            for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), whole)
  flipped = whole[:, 0, 1, 0] >= 100  # right column now holds the +100 column
  assert 0 < flipped.sum() < 8


def test_indivisible_process_batch():
  with pytest.raises(UserError, match='processes'):
    make_source(batch=5, process_count=2)
