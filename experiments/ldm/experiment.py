"""Latent diffusion (Rombach et al. 2022): DDPM/DDIM in the latent space of a trained VAE.

The autoencoder is a gen_jax VAE run (`ldm.autoencoder_workdir`, spatial latent). Its
EMA parameters encode the training set once to posterior means, cached beside the VAE
run under latents/<fingerprint>.npz, where the fingerprint hashes the VAE's parameters
(a retrained or resumed VAE gets a new cache). Latents are multiplied by
1 / std(latents) (LDM's scale_by_std), kept in the train state as
model_state['latent_scale'] so a checkpoint always decodes with the scale it was trained
with. Everything else (U-Net, loss, samplers, guidance, train loop) is the diffusion
family's; samples are decoded by the VAE into image grids.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

import experiments
from experiments.diffusion import checks as diffusion_checks
from experiments.diffusion.experiment import DiffusionExperiment
from experiments.ldm import checks
from experiments.ldm import schema
from gen_jax.core import parallel
from gen_jax.core.train_state import TrainState
from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.platform import checkpoint
from gen_jax.platform.errors import UserError


_ENCODE_CHUNK = 512  # images per compiled encoder / decoder call (over all devices)


class Autoencoder:
  """A trained gen_jax VAE run, as encode / decode functions of its EMA parameters."""

  def __init__(self, workdir: str, mesh):
    self.workdir = os.path.abspath(workdir)
    self.config, self.vae, state = experiments.load_run(
        workdir, mesh, 'vae', 'ldm.autoencoder_workdir',
        'python launch.py --config=configs/vae_spatial.py --workdir=DIR')
    self.latent_shape = tuple(self.config.vae.latent_shape)
    if len(self.latent_shape) != 3:
      raise UserError(f'the VAE in {workdir} has a flat latent {self.latent_shape}; latent '
                      f'diffusion needs a spatial (h, w, c) one (configs/vae_spatial.py).')
    self.step = int(jax.device_get(state.step))
    self.params = jax.device_get(state.ema_params)
    self._rows = parallel.RowMapper(mesh)

  def fingerprint(self) -> str:
    """sha256 of the parameters and latent shape (16 hex digits)."""
    return checkpoint.fingerprint(self.params, repr(self.latent_shape))

  def _posterior_mean(self, params, x):  # per device: (b, H, W, C) -> (b, h, w, c)
    return self.vae.encode(params, x)[0]

  def encode(self, images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) images in [-1, 1] -> (N, h, w, c) posterior means."""
    return self._rows.in_chunks(self._posterior_mean, self.params, images,
                                chunk=min(_ENCODE_CHUNK, len(images)))

  def decode(self, latents: np.ndarray) -> np.ndarray:
    """(N, h, w, c) latents -> (N, H, W, C) images in [-1, 1]."""
    return self._rows.in_chunks(self.vae.decode_images, self.params, latents,
                                chunk=min(_ENCODE_CHUNK, len(latents)))

  def encoded(self, dataset: arrays.ArrayDataset, name: str) -> np.ndarray:
    """The latents of `dataset`, from the cache when this VAE encoded it before."""
    path = os.path.join(self.workdir, 'latents', f'{name}_{self.fingerprint()}.npz')
    if os.path.exists(path):
      return np.load(path)['latents']
    latents = self.encode(dataset.images)
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      tmp = path + '.tmp.npz'
      np.savez(tmp, latents=latents)
      os.replace(tmp, path)  # atomic: a crash leaves no half-written cache
    return latents


def latent_scale(latents: np.ndarray) -> float:
  """LDM's scale_by_std: 1 / std of all latent values, so scaled latents have unit variance."""
  return float(1.0 / np.std(latents.astype(np.float64)))


class LatentDiffusionExperiment(DiffusionExperiment):
  """The diffusion family on a VAE's scaled latents; samples are decoded to images."""

  RESUMABLE_FIELDS = schema.RESUMABLE_FIELDS
  RENAMED = schema.RENAMED

  def __init__(self, config, mesh):
    checks.validate(config)  # the latent side is known below
    self.autoencoder = Autoencoder(config.ldm.autoencoder_workdir, mesh)
    h, w, _ = self.autoencoder.latent_shape
    levels = len(config.model.ch_mult)
    if h != w or h % 2 ** (levels - 1):
      raise UserError(f'the VAE latent {self.autoencoder.latent_shape} does not fit the U-Net: '
                      f'its side must be square and divide by 2^(len(model.ch_mult)-1)='
                      f'{2 ** (levels - 1)}; change model.ch_mult or the VAE.')
    diffusion_checks.validate_unet_size(config.model, h, 'the VAE latent side')  # before encoding
    images = datasets.load_dataset(self.autoencoder.config.data, config.data.train_split)
    latents = self.autoencoder.encoded(images, f'{config.data.train_split}')
    self.scale = latent_scale(latents)
    train = arrays.ArrayDataset(images=(latents * self.scale).astype(np.float32),
                              labels=images.labels, num_classes=images.num_classes)
    super().__init__(config, mesh, train_data=train)

  def init_state(self, rng) -> TrainState:
    state = super().init_state(rng)
    return state.replace(model_state={'latent_scale': jnp.asarray(self.scale, jnp.float32)})

  def to_images(self, state: TrainState, samples: np.ndarray) -> np.ndarray:
    """Latent samples -> decoded images in [-1, 1], with the state's own scale."""
    scale = float(jax.device_get(state.model_state['latent_scale']))
    return np.clip(self.autoencoder.decode(samples / scale), -1.0, 1.0)

  def evaluate(self, state: TrainState, step: int) -> dict:
    """No likelihood: the diffusion bound would be on scaled latents, not on images
    (evaluation still scores the decoded samples)."""
    del state, step
    return {}


# The family's Experiment, as the registry (experiments/__init__.py) finds it.
EXPERIMENT = LatentDiffusionExperiment
