"""VAE on tfds MNIST (28x28), Bernoulli likelihood, 32-d latent: a Kingma & Welling
(2014) style setup (their MLP becomes a small conv net). Needs MNIST prepared for tfds
(`tfds build mnist --data_dir=DIR`, then --config.data.data_dir=DIR); held-out numbers
use the MNIST 'test' split (10,000 images).
"""

import ml_collections

from configs import vae


def get_config() -> ml_collections.ConfigDict:
  config = vae.get_vae_config()
  config.data.dataset = 'mnist'
  config.data.image_size = 28  # 28 -> 14 -> 7 with two conv levels.
  config.model.features = (32, 64)
  config.model.hidden = 500  # Kingma & Welling's hidden width.
  config.vae.latent_shape = (32,)
  config.vae.likelihood = 'bernoulli'
  config.vae.iwae_samples = 100
  config.vae.eval_batch_size = 1000
  config.training.batch_size = 128
  config.training.num_steps = 20000
  config.training.log_every = 100
  config.training.checkpoint_every = 2000
  config.training.sample_every = 5000
  config.training.eval_every = 5000
  config.optim.lr = 1e-3
  config.optim.ema_decay = 0.999
  return config
