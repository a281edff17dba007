"""A VAE with a spatial 4x4x4 latent on 16x16 digits: the first stage of configs/ldm.py."""

from configs import vae


def get_config():
  config = vae.get_config()
  config.vae.latent_shape = (4, 4, 4)  # h = w = 16 / 2^len(model.features)
  config.training.eval_every = 3000
  config.training.sample_every = 3000
  # The 16x16 digits and their step budget of before the VAE default moved to 8x8 (issue 19).
  config.data.image_size = 16
  config.eval.image_size = 0
  config.training.num_steps = 3000
  config.training.checkpoint_every = 1000
  return config
