"""Convolutional encoder and decoder of a variational autoencoder (Kingma & Welling 2014).

The latent is either flat, shape (k,), or spatial, shape (h, w, c) (what latent
diffusion trains in). The encoder returns the mean and log-variance of the diagonal
Gaussian q(z|x); the decoder returns the parameters of p(x|z) per pixel (Gaussian means
or Bernoulli logits; see `gen_jax.objectives.vae`). Sampling and losses live outside
the modules, so encode and decode are plain functions of the parameters:
`model.apply(params, x, method=VAE.encode)`, `model.apply(params, z, method=VAE.decode)`.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models import layers


class Encoder(nn.Module):
  """x -> (mu, logvar) of q(z|x).

  Attributes:
    features: channels of the stride-2 convolutions, one per halving of H and W.
    latent_shape: (k,) for a flat latent, (h, w, c) for a spatial one.
    hidden: width of the dense layer before a flat latent.
  """
  features: Sequence[int]
  latent_shape: Sequence[int]
  hidden: int = 256

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (B, H, W, C) in [-1, 1]. Returns mu, logvar: (B, *latent_shape) each."""
    h = x
    for i, f in enumerate(self.features):
      h = nn.silu(nn.Conv(f, (3, 3), strides=(2, 2), name=f'down{i}')(h))  # halves H, W
    if len(self.latent_shape) == 1:  # flat: (B, H', W', F) -> (B, 2k)
      h = nn.silu(nn.Dense(self.hidden, name='hidden')(h.reshape(h.shape[0], -1)))
      stats = nn.Dense(2 * self.latent_shape[0], name='stats')(h)
    else:  # spatial: (B, h, w, F) -> (B, h, w, 2c)
      stats = nn.Conv(2 * self.latent_shape[-1], (3, 3), name='stats')(h)
    mu, logvar = jnp.split(stats, 2, axis=-1)
    return mu, logvar


class Decoder(nn.Module):
  """z -> per-pixel parameters of p(x|z).

  Attributes:
    features: encoder channels; the decoder mirrors them (last level first).
    latent_shape: (k,) or (h, w, c).
    image_shape: (H, W, C) of the output.
    hidden: width of the dense layer after a flat latent.
  """
  features: Sequence[int]
  latent_shape: Sequence[int]
  image_shape: Sequence[int]
  hidden: int = 256

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """z: (B, *latent_shape). Returns (B, H, W, C)."""
    height, width, channels = self.image_shape
    scale = 2 ** len(self.features)
    if len(self.latent_shape) == 1:  # flat: (B, k) -> (B, H/scale, W/scale, F)
      h = nn.silu(nn.Dense(self.hidden, name='hidden')(z))
      h = nn.Dense(height // scale * width // scale * self.features[-1], name='project')(h)
      h = nn.silu(h.reshape(z.shape[0], height // scale, width // scale, self.features[-1]))
    else:  # spatial: (B, h, w, c) -> (B, h, w, F)
      h = nn.silu(nn.Conv(self.features[-1], (3, 3), name='project')(z))
    for i, f in reversed(list(enumerate(self.features))):
      # Nearest upsampling + conv: on CPU far cheaper to train than a transposed conv.
      h = layers.Upsample(with_conv=False)(h)  # doubles H, W
      h = nn.silu(nn.Conv(f, (3, 3), name=f'up{i}')(h))
    return nn.Conv(channels, (3, 3), name='out')(h)


class VAE(nn.Module):
  """The encoder and decoder under one set of parameters.

  Attributes:
    features: channels per downsampling level (each halves H and W).
    latent_shape: (k,) or (h, w, c); a spatial latent needs h = H / 2^len(features).
    image_shape: (H, W, C).
    hidden: dense width around a flat latent.
  """
  features: Sequence[int]
  latent_shape: Sequence[int]
  image_shape: Sequence[int]
  hidden: int = 256

  def setup(self):
    self.encoder = Encoder(self.features, self.latent_shape, self.hidden)
    self.decoder = Decoder(self.features, self.latent_shape, self.image_shape, self.hidden)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(B, H, W, C) -> mu, logvar: (B, *latent_shape)."""
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    """(B, *latent_shape) -> (B, H, W, C) parameters of p(x|z)."""
    return self.decoder(z)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Decodes the posterior mean (used to create all parameters at init)."""
    mu, _ = self.encode(x)
    return self.decode(mu)
