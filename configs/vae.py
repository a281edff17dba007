"""VAE on the embedded digits at their native 8x8 with a 16-d latent, scored at 16x16:
reconstructions and prior samples, 40000 steps (about 7 minutes on one CPU core; against a
plain MLP VAE trained as long: docs/results/2026-11-30-quality-vs-minutes.md).
`--config.vae.latent_shape='(2,)'` also draws the decoded manifold.

Held-out evaluation (eval/elbo, eval/iwae_nll) uses `data.eval_split`: for digits the
'test' split, the last 297 of the 1797 images (training uses the first 1500).
"""

import ml_collections

from configs import base


def get_vae_config() -> ml_collections.ConfigDict:
  """The base blocks plus the VAE family's model and `vae` blocks."""
  config = base.get_base_config()
  config.family = 'vae'

  config.model = ml_collections.ConfigDict()
  config.model.features = (16, 32)  # conv channels per level; each level halves H and W.
  config.model.hidden = 256  # dense width between the conv stack and a flat latent.

  config.vae = ml_collections.ConfigDict()
  # (k,) for a flat k-dim latent; (h, w, c) spatial, h = w = image_size / 2^len(features).
  config.vae.latent_shape = (2,)
  config.vae.likelihood = 'bernoulli'  # p(x|z): 'bernoulli' (intensities as probs) or 'gaussian'.
  config.vae.obs_variance = 0.01  # eta: fixed variance of the Gaussian, on the [0, 1] scale.
  config.vae.beta = 1.0  # weight of the KL term (beta-VAE); eval/elbo always uses 1.
  config.vae.iwae_samples = 100  # K importance samples per held-out example for eval/iwae_nll.

  config.sampling.num_samples = 64  # prior samples per grid / .npz.
  config.sampling.num_recon = 32  # held-out images shown above their reconstructions.
  config.sampling.manifold_size = 20  # 2-d flat latents: manifold grid points per axis.
  return config


def get_config() -> ml_collections.ConfigDict:
  config = get_vae_config()
  # The digits are 8x8: the native grid (conv levels 8 -> 4 -> 2) costs a quarter of
  # upsampled 16x16 per step; scored at 16x16 by the 16px classifier, samples resized
  # bilinearly as the real digits are.
  config.data.image_size = 8
  config.eval.image_size = 16
  # A 16-d latent: a 2-d one draws the manifold but its prior samples miss most of the data
  # (recall 0.24 at 16x16, README).
  config.vae.latent_shape = (16,)
  config.training.batch_size = 64
  config.training.num_steps = 40000
  config.training.log_every = 100
  config.training.checkpoint_every = 10000
  config.training.sample_every = 40000
  config.training.eval_every = 40000
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995
  return config
