"""VAE on the embedded digits at 16x16 with a 2-d latent, so the decoded data manifold
is drawn: reconstructions, prior samples and the manifold in a few minutes on 2 CPU cores.

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
  config.training.batch_size = 64
  config.training.num_steps = 3000
  config.training.log_every = 100
  config.training.checkpoint_every = 1000
  config.training.sample_every = 1000
  config.training.eval_every = 1000
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995
  return config
