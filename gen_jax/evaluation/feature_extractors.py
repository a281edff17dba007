"""Feature extractors: images -> (features, class probabilities), split over all devices.

Two kinds, behind one interface (`FeatureExtractor`):
  * 'classifier': a gen_jax classifier run (`eval.classifier_workdir`, e.g.
    configs/classifier_digits.py). Penultimate features for Frechet distance, KID and
    precision/recall; its softmax for class coverage, conditional accuracy and IS.
    Works offline and fast on CPU; numbers are comparable only between runs that use
    the same classifier (its fingerprint is in every manifest).
  * 'inception': Inception-v3 pool3 features and 1008-way logits as in the standard
    FID / IS (pytorch-fid's port of the TF 2015 graph, `gen_jax.models.inception`),
    with its uint8 quantisation and bilinear resize to 299, from a local weights file
    (`eval.inception_weights`). Its probabilities are the softmax of the unbiased logits
    pool3 @ W, as the original IS code and torch-fidelity compute IS. They serve IS
    only: ImageNet classes say nothing about a dataset's own classes, so class coverage
    needs the classifier.
"""

import os
from typing import Protocol

import jax
import numpy as np

from gen_jax.core import parallel
from gen_jax.evaluation import inception_weights
from gen_jax.models import inception
from gen_jax.platform import checkpoint
from gen_jax.platform.errors import UserError

EXTRACTORS = ('classifier', 'inception')


class FeatureExtractor(Protocol):
  """What evaluation needs of a feature extractor."""
  name: str  # 'classifier' or 'inception'
  fingerprint: str  # sha256 of its weights (16 hex digits): names cached statistics
  num_classes: int  # classes of its predictions that describe the dataset (0: none)

  def describe(self) -> dict:
    """What the manifest records: name, fingerprint, source, feature size."""

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) in [-1, 1] -> features (N, D) float32, probabilities (N, K)."""


class _Batched:
  """Runs a per-device (params, images) -> (features, probs) function in fixed chunks."""

  def __init__(self, mesh, per_device, params, chunk: int):
    self._rows = parallel.RowMapper(mesh)
    self._per_device = per_device
    self._params = parallel.replicate(jax.device_get(params), mesh)
    devices = mesh.devices.size
    self._chunk = -(-chunk // devices) * devices  # one compilation for every chunk

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features, probs = self._rows.in_chunks(self._per_device, self._params, images,
                                           chunk=self._chunk)
    return features.astype(np.float32), probs.astype(np.float32)


class ClassifierExtractor:
  """A trained classifier's penultimate features and softmax (its EMA parameters).

  Args:
    features_and_probs: (params, images (b, H, W, C) in [-1, 1]) -> features (b, F),
      probabilities (b, K), per device (the classifier family's, see
      experiments/evaluation.py, which loads the run).
    params: the parameters it takes.
    num_classes: K.
    workdir: the classifier run's directory (recorded in manifests).
    step: its checkpoint's step.
    mesh: the device mesh.
    chunk: images per compiled call.
  """
  name = 'classifier'

  def __init__(self, features_and_probs, params, num_classes: int, workdir: str, step: int,
               mesh, chunk: int = 500):
    self.workdir = os.path.abspath(workdir) if workdir else ''
    self.num_classes = num_classes
    self.step = step
    self.fingerprint = checkpoint.fingerprint(params, 'classifier')
    self._run = _Batched(mesh, features_and_probs, params, chunk)

  def describe(self) -> dict:
    return {'name': self.name, 'fingerprint': self.fingerprint, 'source': self.workdir,
            'checkpoint_step': self.step}

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return self._run(images)


class InceptionExtractor:
  """Inception-v3 pool3 features (2048) and the softmax of its 1008 unbiased logits (IS)."""
  name = 'inception'
  num_classes = 0  # ImageNet's classes are not the dataset's

  def __init__(self, weights_path: str, mesh, chunk: int = 64):
    if not weights_path:
      raise UserError(f"eval.feature_extractor='inception' needs eval.inception_weights: the "
                      f"path of pytorch-fid's weights file, from "
                      f"{inception_weights.FID_WEIGHTS_URL}.")
    self.weights_path = os.path.abspath(os.path.expanduser(weights_path))
    variables = inception_weights.load_inception_params(self.weights_path)  # one-line errors
    self.fingerprint = checkpoint.fingerprint(variables, 'inception')

    def per_device(params, images):  # images: (b, H, W, C) in [-1, 1]
      pool, _ = inception.InceptionV3().apply(params, inception.preprocess(images))
      # IS protocol: softmax(pool3 @ W), without the final bias (see models/inception.py).
      return pool, jax.nn.softmax(inception.unbiased_logits(params, pool))

    self._run = _Batched(mesh, per_device, variables, chunk)

  def describe(self) -> dict:
    return {'name': self.name, 'fingerprint': self.fingerprint, 'source': self.weights_path,
            'preprocessing': 'uint8 quantization, bilinear resize to 299 (pytorch-fid)',
            'inception_score_logits': 'pool3 @ W, no bias (original IS code, torch-fidelity)'}

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return self._run(images)
