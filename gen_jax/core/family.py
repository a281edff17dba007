"""The contract between the library and a family: the abstract `Experiment`.

Every family (experiments/<family>/: diffusion, VAE, GAN, latent diffusion, classifier)
subclasses `Experiment`; the train loop (gen_jax.core.trainer), vmapped trials
(gen_jax.core.vmap_trials), the registry (experiments/__init__.py) and the evaluation
program (experiments/evaluation.py) use only what is declared here. The
abstract methods are required: a family lacking one cannot be built
(`experiments.build` says which, in one line). Everything else has the default written
here, and a family overrides what it needs.

Per-trial hyperparameters: `VMAP_FIELDS` names the config fields a family lets
`sweep.vmap` vary between the trials of one program. All but `seed` reach the step as
its `hparams` argument, {dotted field: value}, built in one place (`hparams`, from the
config); a plain run passes the config's Python numbers (constants of the compiled step,
as before), a vmapped trial its own traced values. The step reads them there, never from
the config, and builds nothing from them (the optimizers take the peak learning rate as
an argument of `update`, `gen_jax.core.optim.make_optimizer`).
"""

import abc
from typing import Any

import jax

from gen_jax.core import parallel
from gen_jax.core.train_state import TrainState
from gen_jax.platform.errors import UserError


class Experiment(abc.ABC):
  """What a family provides to the library.

  Attributes:
    config: the run's config (set by the subclass's constructor).
    mesh: the device mesh it runs on (a one-axis `data` mesh).
    VMAP_FIELDS: dotted config fields `sweep.vmap` may vary per trial: 'seed' (each
      trial's base key and batch order) and numeric fields its step reads from `hparams`.
    WATCHED_METRICS: the step's metrics that the train loop checks for non-finite values
      (a step with any of them non-finite is not applied, and the run stops there).
    SHOWN_METRICS: the step's metrics on the console's progress line (all are logged).
    makes_images: whether `sample_images` makes images that evaluation scores with image
      features (the ring8 GAN's 2-d points and the classifier make none).
    image_shape: (H, W, C) of its images, or None.
    RESUMABLE_FIELDS: the family's own dotted fields (or blocks, ending in '.') a resumed
      run may change, besides the shared ones (`gen_jax.platform.run_config.MUTABLE`); the
      train loop passes them to `run_config.changes`.
    RENAMED: the family's renamed fields {old dotted field: new}, so that the train loop
      reads a config.json written under old names under the new ones.
  """
  config: Any
  mesh: jax.sharding.Mesh
  VMAP_FIELDS: tuple[str, ...] = ()
  WATCHED_METRICS: tuple[str, ...] = ('loss', 'grad_norm')
  SHOWN_METRICS: tuple[str, ...] = ('loss', 'grad_norm')
  makes_images: bool = False
  image_shape: tuple[int, ...] | None = None
  RESUMABLE_FIELDS: tuple[str, ...] = ()
  RENAMED: dict[str, str] = {}

  # --- training (required) -------------------------------------------------------------
  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> TrainState:
    """A fresh state from the base key (called under jit, identically on every host)."""

  @abc.abstractmethod
  def train_batches(self):
    """A `gen_jax.data.arrays.BatchSource` (anything with `.batch(step)` -> host-local dict)."""

  @abc.abstractmethod
  def train_step(self, state: TrainState, batch: dict, rng: jax.Array, hparams: dict):
    """One update, written per device.

    Args:
      state: the replicated state.
      batch: this device's shard of the step's batch.
      rng: the step's key (the same on every device; see `trainer.make_train_step`).
      hparams: {field of VMAP_FIELDS but 'seed': value} (see the module docstring).
    Returns:
      (state, metrics), the metrics already `lax.pmean`ed over `data`.
    """

  @abc.abstractmethod
  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> list:
    """Generates samples (all processes take part), writes them (process 0) under
    WORKDIR/samples with `prefix` ('train', 'sample') and returns the paths."""

  # --- restoring without data (default) ------------------------------------------------
  @classmethod
  def from_saved_shapes(cls, config, mesh, shapes: dict[str, tuple]) -> 'Experiment':
    """The experiment of a trained run, built from its checkpoint's parameter shapes
    ({path: shape}, `Checkpointer.saved_shapes`) without loading its data: a run
    restored as a component (`experiments.load_run`: VAEs for latent diffusion,
    classifiers for evaluation).

    Raises:
      UserError: the family cannot be restored that way (the default).
    """
    del mesh, shapes
    raise UserError(f'a {config.family} run cannot be restored without its data '
                    f'({cls.__name__} has no from_saved_shapes).')

  # --- training (defaults) -------------------------------------------------------------
  def hparams(self) -> dict[str, Any]:
    """The step's `hparams` of a plain run: the config's values of VMAP_FIELDS but seed."""
    values = {}
    for field in self.VMAP_FIELDS:
      if field == 'seed':
        continue
      node = self.config
      for part in field.split('.'):
        node = node[part]
      values[field] = node
    return values

  def step_hparams(self, state: TrainState) -> dict[str, Any]:
    """The `hparams` the train loop passes to `train_step` for `state` (vmapped trials
    replace the config's values by the trial's own)."""
    del state
    return self.hparams()

  def finalize_metrics(self, metrics: dict) -> dict:
    """Host-side post-processing of a step's fetched metrics before logging."""
    return metrics

  def state_sharding(self):
    """Where the state lives (a pytree prefix of it): replicated on `mesh`."""
    return parallel.replicated(self.mesh)

  def map_step(self, per_device):
    """The compiled step from the loop's per-device step: jit(shard_map) over `mesh`,
    the state donated (vmapped trials map over a (data, trial) mesh instead)."""
    return parallel.map_per_device(
        per_device, self.mesh, in_specs=(parallel.REPLICATED, parallel.SHARDED),
        out_specs=(parallel.REPLICATED, parallel.REPLICATED), donate_argnums=(0,))

  # --- evaluation (defaults) -----------------------------------------------------------
  def evaluate(self, state: TrainState, step: int) -> dict[str, float]:
    """The family's own metrics {'eval/...': value} (all processes take part), every
    `training.eval_every` steps and in `--mode=eval`; none by default."""
    del state, step
    return {}

  def sample_images(self, state: TrainState, rng: jax.Array, num_samples: int,
                    labels=None, use_ema: bool = True):
    """num_samples images (N, H, W, C) in [-1, 1] drawn with `rng` (all processes call
    it), of classes `labels` (N,) for a conditional family (None: its own choice), with
    the EMA parameters (False: the raw ones)."""
    del state, rng, num_samples, labels, use_ema
    raise UserError(f'the {self.config.family} family makes no images to sample or score.')

  def eval_labels(self, num_samples: int):
    """The classes (N,) evaluation samples are asked for, or None (unconditional)."""
    del num_samples
    return None

  def sampler_settings(self) -> dict:
    """How `sample_images` samples, for evaluation manifests."""
    return {}


def contract_problem(cls) -> str:
  """What keeps `cls` from being built as a family ('' when nothing): not a subclass of
  `Experiment`, or the required hooks it does not implement."""
  if not (isinstance(cls, type) and issubclass(cls, Experiment)):
    return 'it does not subclass gen_jax.core.family.Experiment'
  missing = sorted(getattr(cls, '__abstractmethods__', ()))
  if missing:
    return f'it lacks {", ".join(missing)} of gen_jax.core.family.Experiment'
  return ''
