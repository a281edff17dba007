"""A split in memory and the batch order every loader follows.

Batch order: the global batch of step s holds the samples at stream positions
s*B .. s*B+B-1 of an endless stream of epochs, each epoch a permutation drawn from
(seed, epoch). The data position is therefore a function of the step, which the
checkpoint holds, so a resumed run reads exactly the batches it would have read.
Every process builds the same order and keeps only its own slice of each global
batch.
"""

import dataclasses

import numpy as np

from gen_jax.platform.errors import UserError


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


def resize(images: np.ndarray, size: int) -> np.ndarray:
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


def to_model_range(images: np.ndarray, size: int) -> np.ndarray:
  """(N, H, W, C) float32 images in [0, 1], resized to `size` and scaled to [-1, 1].

  In place where the resize returns its input: a split can be hundreds of MB as float32.
  """
  images = resize(images, size)
  np.clip(images, 0.0, 1.0, out=images)
  images *= 2.0
  images -= 1.0
  return images


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
