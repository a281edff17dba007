"""Features of real data, computed once per (dataset, split, image size, extractor) and
cached on disk under the fingerprint of the extractor's weights.

A `FeatureSet` holds what every metric needs: features (for Frechet distance, KID and
precision/recall), class probabilities (IS, class coverage) and labels. The reference
statistics' own fingerprint (of their mean and covariance) goes into every manifest,
so two results can be checked for having been measured against the same numbers.
"""

import dataclasses
import hashlib
import os

import jax
import numpy as np

from gen_jax.data import datasets


@dataclasses.dataclass(frozen=True)
class FeatureSet:
  """Features of a set of images (generated or real)."""
  features: np.ndarray  # (N, D) float32
  probs: np.ndarray  # (N, K) float32 class probabilities of the extractor
  labels: np.ndarray | None = None  # (N,) int32: true (real) or requested (generated)

  def __len__(self) -> int:
    return self.features.shape[0]

  def fingerprint(self) -> str:
    """sha256 of the float64 mean and covariance of the features (16 hex digits)."""
    features = self.features.astype(np.float64)
    digest = hashlib.sha256(features.mean(0).tobytes())
    digest.update(np.cov(features, rowvar=False).tobytes())
    return digest.hexdigest()[:16]


def default_cache_dir(data_config) -> str:
  """Beside the data when there is a data dir, else the user's cache."""
  if data_config.data_dir:
    return os.path.join(os.path.expanduser(data_config.data_dir), 'gen_jax_reference')
  return os.path.join(os.path.expanduser('~'), '.cache', 'gen_jax', 'reference')


def real_features(data_config, split: str, extractor, cache_dir: str = '',
                  max_examples: int = 0) -> tuple[FeatureSet, str]:
  """Features of `split` of the config's dataset, from the cache when computed before.

  Args:
    data_config: the config's `data` block (dataset, image size, data dir).
    split: which split.
    extractor: a `feature_extractors.FeatureExtractor`.
    cache_dir: where the cache lives ('' = `default_cache_dir`).
    max_examples: use the first this many examples (0 = all).
  Returns:
    The feature set and the cache file's path.
  """
  cache_dir = os.path.expanduser(cache_dir) if cache_dir else default_cache_dir(data_config)
  name = (f'{data_config.dataset}_{split}_{data_config.image_size}px_'
          f'{max_examples or "all"}_{extractor.name}_{extractor.fingerprint}.npz')
  path = os.path.join(cache_dir, name.replace('/', '_'))
  if os.path.exists(path):
    with np.load(path) as cached:
      return FeatureSet(cached['features'], cached['probs'], cached['labels']), path
  dataset = datasets.load_dataset(data_config, split)
  images, labels = dataset.images, dataset.labels
  if max_examples:
    images, labels = images[:max_examples], labels[:max_examples]
  features, probs = extractor(images)
  if jax.process_index() == 0:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + '.tmp.npz'
    np.savez(tmp, features=features, probs=probs, labels=labels)
    os.replace(tmp, path)  # atomic: an interrupted run leaves no half-written cache
  return FeatureSet(features, probs, labels), path
