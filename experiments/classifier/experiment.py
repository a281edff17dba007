"""The classifier family: a small CNN trained on the dataset's labels.

It exists for evaluation: its penultimate features give an offline Frechet distance
and its predictions give class coverage and, for conditional models, the accuracy of
samples for their requested class (see `gen_jax.evaluation`). Trained with the same
loop, checkpoints and EMA as every family.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import base
from experiments.classifier import checks
from experiments.classifier import schema
from gen_jax.core import parallel
from gen_jax.core.train_state import TrainState
from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.models.classifier import Classifier
from gen_jax.objectives.classification import make_classification_loss
from gen_jax.platform import viz
from gen_jax.platform.errors import UserError


class ClassifierExperiment(base.SingleNetworkExperiment):
  """Builds the classifier, its cross-entropy loss, held-out accuracy and error figure."""

  RESUMABLE_FIELDS = schema.RESUMABLE_FIELDS
  RENAMED = schema.RENAMED

  def __init__(self, config, mesh, image_shape: tuple[int, ...] | None = None,
               num_classes: int = 0):
    """Args: config, mesh; image_shape (H, W, C) and num_classes: given, no data is
    loaded (a trained run restored as a feature extractor, `from_saved_shapes`) until
    an evaluation or figure needs the held-out split."""
    checks.validate(config)
    self.config = config
    self.mesh = mesh
    self._train_data = self._eval_data = None
    if image_shape is None:
      self._train_data = datasets.load_train_data(config.data)
      self._eval_data = datasets.load_dataset(config.data, config.data.eval_split)
      image_shape, num_classes = self._train_data.image_shape, self._train_data.num_classes
    self.num_classes = num_classes
    if self.num_classes < 2:
      raise UserError(f'a classifier needs labelled data; {config.data.dataset!r} has '
                      f'{self.num_classes} classes.')
    self.image_shape = tuple(image_shape)  # (H, W, C)
    if len(self.image_shape) != 3:
      raise UserError(f'a classifier needs images; {config.data.dataset!r} has samples of '
                      f'shape {self.image_shape}.')
    m = config.model
    self.model = Classifier(num_classes=self.num_classes, features=tuple(m.features),
                            feature_dim=m.feature_dim, num_groups=m.num_groups,
                            dropout=m.dropout)
    self.build_optimizer()
    self.loss_fn = make_classification_loss(self._train_logits, m.label_smoothing)
    self._run_sharded = parallel.RowMapper(mesh)

  @classmethod
  def from_saved_shapes(cls, config, mesh, shapes: dict[str, tuple]) -> 'ClassifierExperiment':
    """The experiment of a trained run, its image channels and classes read off its
    checkpoint's parameter shapes (`checkpoint.Checkpointer.saved_shapes`): no data is
    loaded."""
    params = {name: shape for name, shape in shapes.items() if name.startswith('params/')}
    conv = next(s for n, s in params.items() if n.endswith('conv0a/kernel'))  # (3, 3, C, f)
    logits = next(s for n, s in params.items() if n.endswith('logits/kernel'))  # (F, K)
    size = config.data.image_size
    return cls(config, mesh, image_shape=(size, size, conv[2]), num_classes=logits[1])

  def held_out(self) -> arrays.ArrayDataset:
    """`data.eval_split` (loaded on first use when the run was restored without data)."""
    if self._eval_data is None:
      self._eval_data = datasets.load_dataset(self.config.data, self.config.data.eval_split)
    return self._eval_data

  def _train_logits(self, params, images, rng):
    return self.model.apply(params, images, train=True, rngs={'dropout': rng})

  def init_params(self, rng):
    return self.model.init(rng, jnp.zeros((1,) + self.image_shape, jnp.float32))

  # --- inference (evaluation's feature extractor uses these) --------------------------
  def logits(self, params, images: jax.Array) -> jax.Array:
    """(B, H, W, C) in [-1, 1] -> (B, K) logits (inference mode)."""
    return self.model.apply(params, images)

  def features_and_probs(self, params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, H, W, C) in [-1, 1] -> penultimate features (B, F) and class probabilities (B, K)."""
    features = self.model.apply(params, images, method=Classifier.penultimate)
    logits = self.model.apply(params, features, method=lambda m, h: m.logits_layer(h))
    return features, jax.nn.softmax(logits)

  def predict(self, params, images: np.ndarray) -> np.ndarray:
    """Predicted classes (N,) of host images, split over the devices."""
    return np.argmax(self._run_sharded(self.logits, params, images), axis=-1)

  # --- evaluation and figures ----------------------------------------------------------
  def evaluate(self, state: TrainState, step: int) -> dict:
    """Held-out accuracy of the EMA parameters on `data.eval_split`."""
    del step
    held_out = self.held_out()
    predictions = self.predict(state.ema_params, held_out.images)
    return {'eval/accuracy': float(np.mean(predictions == held_out.labels))}

  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> list:
    """A grid of the held-out images it misclassifies (up to 64), and the accuracy."""
    held_out = self.held_out()
    predictions = self.predict(state.ema_params, held_out.images)
    wrong = np.flatnonzero(predictions != held_out.labels)[:64]
    path = os.path.join(workdir, 'samples', f'errors_{prefix}_step{step:07d}.png')
    if jax.process_index() == 0:
      accuracy = float(np.mean(predictions == held_out.labels))
      pairs = ', '.join(f'{held_out.labels[i]}->{predictions[i]}' for i in wrong[:16])
      print(f'held-out accuracy {accuracy:.4f} ({len(held_out)} images); '
            f'{len(wrong)} misclassified shown in {path} (true->predicted: {pairs})',
            flush=True)
      if len(wrong):
        viz.save_grid(path, held_out.images[wrong])
    return [path] if len(wrong) else []


# The family's Experiment, as the registry (experiments/__init__.py) finds it.
EXPERIMENT = ClassifierExperiment
