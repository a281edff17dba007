"""The VAE family: ELBO training, held-out ELBO and IWAE likelihood, reconstructions,
prior samples, and the decoded manifold of a 2-d latent.

Samples and evaluations use the EMA parameters (the parameters themselves when
`optim.ema_decay` is 0). Everything that runs on the devices is written per device and
mapped with `parallel.map_per_device`; per-example random draws are keyed by each
example's position, so results do not depend on the device count.

For other families (latent diffusion): `build_model(config, image_shape)` rebuilds the
network of a VAE config, and `VAEExperiment.encode / encode_sample / decode /
decode_images` are plain functions of its parameters.
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import base
from experiments.vae import checks
from experiments.vae import schema
from gen_jax.core import parallel
from gen_jax.core import rng_streams
from gen_jax.core.parallel import per_example_keys
from gen_jax.core.train_state import TrainState
from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.models.vae import VAE
from gen_jax.objectives import vae as objectives
from gen_jax.platform import viz
from gen_jax.platform.errors import UserError


_RECON_COLUMNS = 16  # images per row of a reconstruction figure


_MANIFOLD_PIXELS = 640  # the manifold figure is upscaled to at least this size


def build_model(config, image_shape: tuple[int, ...]) -> VAE:
  """The VAE network of `config` for images of `image_shape` (H, W, C)."""
  return VAE(features=tuple(config.model.features),
             latent_shape=tuple(config.vae.latent_shape),
             image_shape=tuple(image_shape), hidden=config.model.hidden)


def _interleave_rows(inputs: np.ndarray, outputs: np.ndarray, ncols: int) -> np.ndarray:
  """Rows of `ncols` inputs, each above the row of its outputs; (N, ...) -> (2 N', ...),
  short last rows padded with white."""
  rows = -(-len(inputs) // ncols)
  pad = rows * ncols - len(inputs)
  blank = np.ones((pad,) + inputs.shape[1:], inputs.dtype)
  inputs, outputs = (np.concatenate([a, blank]).reshape((rows, ncols) + a.shape[1:])
                     for a in (inputs, outputs))
  return np.stack([inputs, outputs], axis=1).reshape((-1,) + inputs.shape[2:])


class VAEExperiment(base.SingleNetworkExperiment):
  """Builds the VAE, its ELBO loss, train step, evaluation and figures from a config."""

  RESUMABLE_FIELDS = schema.RESUMABLE_FIELDS
  RENAMED = schema.RENAMED

  SHOWN_METRICS = ('loss', 'grad_norm', 'elbo')

  def __init__(self, config, mesh, image_shape: tuple[int, ...] | None = None):
    """Args: config, mesh; image_shape (H, W, C): given, no data is loaded (a trained
    run restored as a component, `from_saved_shapes`) until a figure or evaluation needs
    the held-out split."""
    checks.validate(config)
    self.config = config
    self.mesh = mesh
    self._train_data = self._eval_data = None
    if image_shape is None:
      self._train_data = datasets.load_train_data(config.data)
      self._eval_data = self._load_eval_data()  # at once: a missing split fails here
      image_shape = self._train_data.image_shape
    self.image_shape = tuple(image_shape)  # (H, W, C)
    self.latent_shape = tuple(config.vae.latent_shape)
    self.model = build_model(config, self.image_shape)
    self._run_sharded = parallel.RowMapper(mesh)  # per-device fns over host rows
    v = config.vae
    self.log_likelihood = objectives.make_log_likelihood(v.likelihood, v.obs_variance)
    self.build_optimizer()
    self.loss_fn = objectives.make_elbo_loss(self.encode, self.decode, self.log_likelihood,
                                             v.beta)

  @classmethod
  def from_saved_shapes(cls, config, mesh, shapes: dict[str, tuple]) -> 'VAEExperiment':
    """The experiment of a trained run, its image channels read off its checkpoint's
    parameter shapes (`checkpoint.Checkpointer.saved_shapes`): no data is loaded."""
    kernel = next(shape for name, shape in shapes.items()
                  if name.startswith('params/') and name.endswith('down0/kernel'))  # (3, 3, C, f)
    size = config.data.image_size
    return cls(config, mesh, image_shape=(size, size, kernel[2]))

  # --- the networks as plain functions of params ---------------------------------------
  def encode(self, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (B, H, W, C) in [-1, 1] -> mu, logvar of q(z|x), each (B, *latent_shape)."""
    return self.model.apply(params, x, method=VAE.encode)

  def encode_sample(self, params, x: jax.Array, rng: jax.Array) -> jax.Array:
    """z ~ q(z|x) by reparameterization, (B, *latent_shape)."""
    mu, logvar = self.encode(params, x)
    return objectives.reparameterize(mu, logvar, jax.random.normal(rng, mu.shape))

  def decode(self, params, z: jax.Array) -> jax.Array:
    """z: (B, *latent_shape) -> (B, H, W, C) parameters of p(x|z) (means or logits)."""
    return self.model.apply(params, z, method=VAE.decode)

  def decode_images(self, params, z: jax.Array) -> jax.Array:
    """z: (B, *latent_shape) -> the mean of p(x|z) as images (B, H, W, C) in [-1, 1]."""
    return objectives.mean_image(self.config.vae.likelihood, self.decode(params, z))

  def init_params(self, rng):
    return self.model.init(rng, jnp.zeros((1,) + self.image_shape, jnp.float32))

  def _prior_images(self, params, index):  # index: (n,) sample numbers
    # The same z at every step: keyed by config.seed and each sample's number.
    key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed), rng_streams.VAE_PRIOR)
    z = objectives.standard_normal_like(per_example_keys(key, index), self.latent_shape)
    return self.decode_images(params, z)

  def _reconstruct(self, params, x):  # x: (n, H, W, C) -> decoded posterior means
    return self.decode_images(params, self.encode(params, x)[0])

  def _encode_mean(self, params, x):
    return self.encode(params, x)[0]

  def _bounds(self, params, x, index):  # x: (n, H, W, C), index: (n,) dataset positions
    # The same importance samples at every evaluation: keyed by eval.seed and position.
    base = jax.random.fold_in(jax.random.PRNGKey(self.config.eval.seed), rng_streams.VAE_BOUNDS)
    keys = per_example_keys(base, index)
    log_weights, elbo, kl = objectives.importance_log_weights(
        self.encode, self.decode, self.log_likelihood, params, x, keys,
        self.config.vae.iwae_samples)
    return {'elbo': elbo, 'kl': kl, 'iwae': objectives.iwae_bound(log_weights)}

  # --- evaluation ------------------------------------------------------------------------
  def _load_eval_data(self) -> arrays.ArrayDataset:
    """The held-out split (`data.eval_split`), cut to `eval.held_out_examples` if set."""
    return datasets.load_held_out(self.config.data, self.config.eval.held_out_examples)

  def eval_dataset(self) -> arrays.ArrayDataset:
    """The held-out examples that evaluation and the figures use."""
    if self._eval_data is None:
      self._eval_data = self._load_eval_data()
    return self._eval_data

  def evaluate(self, state: TrainState, step: int) -> dict:
    """Held-out ELBO and IWAE_K estimate of -log p(x), per example.

    Returns:
      {'eval/elbo' (nats, <= 0 for Bernoulli), 'eval/kl', 'eval/recon' (-E_q log p(x|z)),
       'eval/iwae_nll' (-IWAE_K bound, nats), 'eval/iwae_bits_per_dim' and
       'eval/nelbo_bits_per_dim' (nats / (D ln 2), D = H W C on the [0, 1] scale)}.
    """
    del step  # The same importance samples at every step.
    held_out = self.eval_dataset()
    n = len(held_out)
    chunks = -(-n // self.config.eval.batch_size)
    chunk = -(-n // chunks)  # equal chunks: one compilation
    index = np.arange(n, dtype=np.int32)
    bounds = self._run_sharded.in_chunks(self._bounds, state.ema_params, held_out.images,
                                         index, chunk=chunk)
    elbo, kl, iwae = (bounds[k].astype(np.float64) for k in ('elbo', 'kl', 'iwae'))
    per_dim = math.prod(self.image_shape) * math.log(2.0)
    return {'eval/elbo': float(elbo.mean()), 'eval/kl': float(kl.mean()),
            'eval/recon': float(-(elbo + kl).mean()), 'eval/iwae_nll': float(-iwae.mean()),
            'eval/iwae_bits_per_dim': float(-iwae.mean() / per_dim),
            'eval/nelbo_bits_per_dim': float(-elbo.mean() / per_dim)}

  # --- evaluation of samples (experiments/evaluation.py) ----------------------------------
  makes_images = True

  def _prior_images_from(self, params_and_key, index):  # index: (n,) sample numbers
    params, key = params_and_key
    z = objectives.standard_normal_like(per_example_keys(key, index), self.latent_shape)
    return self.decode_images(params, z)

  def sample_images(self, state: TrainState, rng, num_samples: int, labels=None,
                    use_ema: bool = True):
    """num_samples decoded prior draws (N, H, W, C) in [-1, 1], z keyed by rng."""
    del labels
    params = state.ema_params if use_ema else state.params
    return self._run_sharded(self._prior_images_from, (params, rng),
                             np.arange(num_samples, dtype=np.int32))

  def sampler_settings(self) -> dict:
    return {'name': 'prior', 'decoder_output': 'mean of p(x|z)',
            'likelihood': self.config.vae.likelihood}

  # --- figures -------------------------------------------------------------------------
  def generate(self, params, num_samples: int) -> np.ndarray:
    """num_samples decoded prior draws (N, H, W, C) in [-1, 1] (fixed z, keyed by number)."""
    return self._run_sharded(self._prior_images, params,
                             np.arange(num_samples, dtype=np.int32))

  def manifold(self, params, n: int) -> np.ndarray:
    """A 2-d latent decoded on an n x n inverse-CDF grid: (n * n, H, W, C), row-major."""
    if self.latent_shape != (2,):
      raise UserError(f'the manifold needs a flat 2-d latent, not {self.latent_shape}.')
    return self._run_sharded(self.decode_images, params, viz.gaussian_latent_grid(n))

  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> list:
    """Writes the figures of `state` under WORKDIR/samples, named KIND_PREFIX_stepSTEP.

    recon_*.png: held-out inputs, each row above the row of their reconstructions
    (decoded posterior means); prior_*.png and .npz: decoded prior draws (images in
    [-1, 1]); for a 2-d latent also manifold_*.png (the decoded inverse-CDF grid) and
    latents_*.png (held-out posterior means coloured by label). In sample mode it also
    evaluates and prints the held-out bounds.

    Returns:
      The paths written (by process 0; every process takes part in computing them).
    """
    cfg, params = self.config.sampling, state.ema_params
    held_out = self.eval_dataset()
    inputs = held_out.images[:cfg.num_recon]
    ncols = min(_RECON_COLUMNS, len(inputs))
    figures = {'recon': viz.image_grid(_interleave_rows(
        inputs, self._run_sharded(self._reconstruct, params, inputs), ncols), ncols)}
    prior = self.generate(params, cfg.num_samples)
    figures['prior'] = viz.image_grid(prior)
    two_d = self.latent_shape == (2,)
    if two_d:
      figures['manifold'] = viz.image_grid(self.manifold(params, cfg.manifold_size),
                                           cfg.manifold_size)
      means = self._run_sharded(self._encode_mean, params, held_out.images)  # (N, 2)
    directory, tag = os.path.join(workdir, 'samples'), f'{prefix}_step{step:07d}'
    path = lambda kind, ext='png': os.path.join(directory, f'{kind}_{tag}.{ext}')
    written = [path(kind) for kind in figures] + [path('prior', 'npz')]
    if two_d:
      written.append(path('latents'))
    if jax.process_index() == 0:
      for kind, picture in figures.items():
        viz.save_png(path(kind), picture,
                     min_size=_MANIFOLD_PIXELS if kind == 'manifold' else 256)
      np.savez_compressed(path('prior', 'npz'), images=prior.astype(np.float32))
      if two_d:
        viz.save_latent_scatter(path('latents'), means, held_out.labels,
                                f'posterior means of {len(means)} held-out images, step {step}')
      print(f'wrote {", ".join(os.path.basename(p) for p in written)} in {directory}',
            flush=True)
    if prefix == 'sample':
      scalars = self.evaluate(state, step)
      if jax.process_index() == 0:
        print(f'eval at step {step}: ' + ', '.join(f'{k} {v:.4g}' for k, v in scalars.items()),
              flush=True)
    return written


# The family's Experiment, as the registry (experiments/__init__.py) finds it.
EXPERIMENT = VAEExperiment
