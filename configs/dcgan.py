"""DCGAN (Radford et al. 2016) on the embedded digits at 16x16, unconditional and
self-conditioned: k-means clusters of the training images (50, no labels) condition both
players. 4000 steps, about 5 minutes on one CPU core. Measured against the VAE default:
docs/results/2026-12-01-dcgan-transposed-conv.md and
docs/results/2026-11-30-dcgan-vs-vae.md.

Every field of the GAN family is in its schema, experiments/gan/schema.py (cgan.py starts
from this run; gan_ring.py, dcgan_cifar10.py and the BigGAN configs from the schema).
"""

import ml_collections

from experiments.gan import schema


def get_config() -> ml_collections.ConfigDict:
  config = schema.get_schema()
  config.data.image_size = 16
  config.model.g_ch = 64  # 4x4x128 -> 8x8x64 -> 16x16x1; D: 16x16 -> 8x8x32 -> 4x4x64.
  config.model.d_ch = 32
  # R1 keeps the digits clean and varied; without it the samples are noisier.
  config.gan.r1_gamma = 1.0
  # An unconditional G must map one Gaussian onto ten separate digits and draws malformed
  # ones between them (precision ~0.3); conditioned on 50 k-means clusters of the pixels
  # (a self-conditioned GAN, Liu et al. 2020), it draws each cluster's digits (README).
  config.gan.cluster_classes = 50
  config.training.batch_size = 64
  config.training.num_steps = 4000  # ~5 minutes on one CPU core (about 15 steps/s).
  config.training.log_every = 100
  config.training.checkpoint_every = 1000
  config.training.sample_every = 1000
  return config
