"""The DDPM digits training, sampled with DDIM (50 steps, eta = 0)."""

from configs import ddpm


def get_config():
  config = ddpm.get_config()
  config.sampling.sampler = 'ddim'
  config.sampling.num_steps = 50
  config.sampling.eta = 0.0
  return config
