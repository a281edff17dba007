"""Latent diffusion on digits: a U-Net in the 4x4x4 latent of a trained VAE.

    python launch.py --config=configs/vae_spatial.py --workdir=runs/vae_spatial
    python launch.py --config=configs/ldm.py --workdir=runs/ldm \
        --config.ldm.autoencoder_workdir=runs/vae_spatial
"""

import ml_collections

from experiments.ldm import schema


def get_config() -> ml_collections.ConfigDict:
  config = schema.get_schema()
  config.ldm.autoencoder_workdir = 'runs/vae_spatial'  # a VAE run with a spatial latent.

  # The latent is (4, 4, 4): two levels (4x4, 2x2) are enough.
  config.model.ch = 64
  config.model.ch_mult = (1, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (2,)
  config.model.num_groups = 16
  config.sampling.clip_x0 = False  # scaled latents are not confined to [-1, 1]
  config.sampling.sampler = 'ddim'
  config.sampling.num_steps = 100
  config.training.batch_size = 64
  config.training.num_steps = 3000
  config.training.checkpoint_every = 1000
  config.training.sample_every = 1500
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995  # as configs/ddpm.py
  # The 16x16 digits of configs/vae_spatial.py (the DDPM default trains at 8x8).
  config.data.image_size = 16
  config.eval.image_size = 0
  config.eval.num_samples = 512  # as configs/ddpm.py
  return config
