"""Building blocks of the DDPM U-Net (Ho et al. 2020), as flax.linen modules."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

# The DDPM code initialises with variance scaling (uniform, fan_avg); the last conv of
# each residual branch and of the network starts at (almost) zero.
default_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')
zero_init = nn.initializers.variance_scaling(1e-10, 'fan_avg', 'uniform')


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal embedding of integer timesteps as in the Transformer / DDPM code.

  Args:
    t: (B,) timesteps.
    dim: embedding width (even).
    max_period: the longest wavelength.
  Returns:
    (B, dim): [sin(t w_0..w_{d/2-1}), cos(t w_0..)] with w_i = max_period^(-i/(d/2-1)).
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]  # (B, half)
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class ResBlock(nn.Module):
  """GroupNorm -> SiLU -> conv -> (+ time embedding) -> GroupNorm -> SiLU -> dropout -> conv."""
  out_ch: int
  num_groups: int = 32
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, temb, train: bool):  # x: (B, H, W, C), temb: (B, D)
    h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=1e-6, name='norm1')(x))
    h = nn.Conv(self.out_ch, (3, 3), kernel_init=default_init, name='conv1')(h)
    h = h + nn.Dense(self.out_ch, kernel_init=default_init, name='temb_proj')(
        nn.silu(temb))[:, None, None, :]
    h = nn.silu(nn.GroupNorm(self.num_groups, epsilon=1e-6, name='norm2')(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = nn.Conv(self.out_ch, (3, 3), kernel_init=zero_init, name='conv2')(h)
    if x.shape[-1] != self.out_ch:
      x = nn.Dense(self.out_ch, kernel_init=default_init, name='skip')(x)  # 1x1 "nin"
    return x + h


class AttnBlock(nn.Module):
  """Single-head self-attention over all pixels, with a residual connection."""
  num_groups: int = 32

  @nn.compact
  def __call__(self, x):  # (B, H, W, C)
    b, height, width, c = x.shape
    h = nn.GroupNorm(self.num_groups, epsilon=1e-6, name='norm')(x)
    qkv = nn.Dense(3 * c, kernel_init=default_init, name='qkv')(h)
    q, k, v = jnp.split(qkv.reshape(b, height * width, 3 * c), 3, axis=-1)  # (B, N, C) each
    weights = jax.nn.softmax(jnp.einsum('bnc,bmc->bnm', q, k) / math.sqrt(c), axis=-1)
    h = jnp.einsum('bnm,bmc->bnc', weights, v).reshape(b, height, width, c)
    return x + nn.Dense(c, kernel_init=zero_init, name='proj_out')(h)


class Downsample(nn.Module):
  """Halves H and W: a stride-2 3x3 conv, or 2x2 average pooling."""
  with_conv: bool = True

  @nn.compact
  def __call__(self, x):  # (B, H, W, C) -> (B, H/2, W/2, C)
    if self.with_conv:
      # Pad bottom/right only, as the DDPM code (and diffusers' downsample_padding=0).
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
      return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), padding='VALID',
                     kernel_init=default_init, name='conv')(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class Upsample(nn.Module):
  """Doubles H and W: nearest neighbour, then optionally a 3x3 conv."""
  with_conv: bool = True

  @nn.compact
  def __call__(self, x):  # (B, H, W, C) -> (B, 2H, 2W, C)
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method='nearest')
    if self.with_conv:
      x = nn.Conv(c, (3, 3), kernel_init=default_init, name='conv')(x)
    return x
