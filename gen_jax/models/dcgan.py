"""GAN players as flax.linen modules: DCGAN convolutional G and D, and MLP players.

Generators map a latent code z (B, Z), and for a conditional model soft class weights
(B, K) (a one-hot row is a class; a mix of rows interpolates between classes), to
samples. Discriminators map samples (and class weights) to one logit per example.

Conditioning follows the usual recipe: the generator concatenates a learned class
embedding to z; the discriminator adds a projection term <embed(y), phi(x)> to its
logit (Miyato & Koyama 2018). With `spectral_norm`, every weight layer of the
discriminator is wrapped in `nn.SpectralNorm`, whose power-iteration vectors live in
the 'spectral' collection (Miyato et al. 2018).
"""

import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models import layers

SPECTRAL = 'spectral'  # variable collection of the spectral-norm power-iteration state
INITS = ('dcgan', 'orthogonal', 'lecun')
D_NORMS = ('none', 'batch')


def kernel_init(name: str) -> Callable:
  """'dcgan': N(0, 0.02) as in Radford et al.; 'orthogonal' as in BigGAN; 'lecun'."""
  if name == 'dcgan':
    return nn.initializers.normal(0.02)
  if name == 'orthogonal':
    return nn.initializers.orthogonal()
  if name == 'lecun':
    return nn.initializers.lecun_normal()
  raise ValueError(f'unknown init {name!r}; use one of {INITS}.')


def num_doublings(image_size: int) -> int:
  """How many times 4x4 doubles to `image_size` (which must be 4 * 2^k, k >= 1)."""
  k = int(round(math.log2(max(image_size, 1) / 4)))
  if k < 1 or 4 * 2 ** k != image_size:
    raise ValueError(f'image_size must be 4 * 2^k with k >= 1, not {image_size}.')
  return k


def _apply(layer: nn.Module, x, spectral_norm: bool, update_stats: bool):
  """layer(x), through spectral normalisation if asked (used by discriminators)."""
  if spectral_norm:
    return nn.SpectralNorm(layer, collection_name=SPECTRAL)(x, update_stats=update_stats)
  return layer(x)


def _logit_head(h, class_weights, num_classes: int, spectral_norm: bool, init: Callable,
                update_stats: bool):
  """A discriminator's logit (B,) from its features h (B, F): a linear layer, plus for
  conditional models the projection term <embed(y), h> (Miyato & Koyama 2018).

  Called inside a discriminator's compact method: the layers are the caller's.
  """
  logit = _apply(nn.Dense(1, kernel_init=init, name='logit'), h, spectral_norm,
                 update_stats)[:, 0]  # (B,)
  if num_classes:
    embed = nn.Dense(h.shape[-1], use_bias=False, kernel_init=init, name='class_embed')
    embed = _apply(embed, class_weights, spectral_norm, update_stats)  # (B, F)
    logit = logit + jnp.sum(embed * h, axis=-1)
  return logit


class BatchStatNorm(nn.Module):
  """BatchNorm that always normalises by the current batch's statistics and keeps no
  running averages: for a discriminator, which only ever runs on training batches (the
  DCGAN paper's D normalises every layer but the first this way).

  Inside shard_map the mean and mean square are averaged over `axis_name`, so the
  statistics are those of the global batch and 8 devices compute what 1 does.

  Attributes:
    axis_name: the mapped device axis (None outside shard_map).
    epsilon: added to the variance.
  """
  axis_name: str | None = None
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):  # x: (B, ..., C)
    axes = tuple(range(x.ndim - 1))
    mean, mean_sq = jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)  # (C,), (C,)
    if self.axis_name is not None and not self.is_initializing():
      mean, mean_sq = jax.lax.pmean((mean, mean_sq), self.axis_name)
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    scale = self.param('scale', nn.initializers.ones, (x.shape[-1],))
    bias = self.param('bias', nn.initializers.zeros, (x.shape[-1],))
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class ConvTranspose4x4s2(nn.Module):
  """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME')`, computed as four
  2x2 convolutions at the input resolution, one per output phase.

  The same parameters (kernel (4, 4, I, O), bias (O,)) and the same map as flax's layer,
  so checkpoints are unchanged. Why: XLA:CPU computes the kernel gradient of the
  input-dilated convolution behind `lax.conv_transpose` about 20x slower than its forward
  (84 ms against 4.5 ms for the digits DCGAN's 4x4 -> 8x8 layer at batch 64), which made
  it most of a training step; the phase convolutions have no dilation.

  With 'SAME' padding, lax.conv_transpose pads the 2x-dilated input by 2 on each side and
  correlates with the unflipped kernel, so output row 2i reads input rows (i-1, i) through
  kernel rows (0, 2), and row 2i+1 reads rows (i, i+1) through kernel rows (1, 3); the
  same for columns.
  """
  features: int
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):  # (B, H, W, I) -> (B, 2H, 2W, O)
    kernel = self.param('kernel', self.kernel_init, (4, 4, x.shape[-1], self.features))
    # Output phase r reads kernel rows r::2 ((0, 2) or (1, 3)); the same for columns.
    y = layers.phase_conv_2x(x, [[kernel[r::2, c::2] for c in (0, 1)]
                                 for r in (0, 1)])  # (B, 2H, 2W, O)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


class DCGANGenerator(nn.Module):
  """z -> Dense to 4x4 -> [ConvTranspose 4x4/2 -> BatchNorm -> ReLU] x (k-1) ->
  ConvTranspose 4x4/2 -> tanh, with channels halving as the resolution doubles
  (ConvTranspose4x4s2: flax's transposed convolution, computed faster on CPU).

  Attributes:
    image_size: output side, 4 * 2^k.
    channels: output channels (1 for digits, 3 for CIFAR-10).
    ch: channels of the last hidden layer (at image_size / 2); the 4x4 layer has
      ch * 2^(k-1).
    num_classes: > 0 makes the generator conditional (embedding concatenated to z).
    embed_dim: width of the class embedding.
    bn_momentum: decay of BatchNorm's running statistics (used for sampling).
    axis_name: the mapped device axis that BatchNorm averages its statistics over
      (None outside shard_map).
    init_scheme: kernel initialiser name (see `kernel_init`).
  """
  image_size: int = 16
  channels: int = 1
  ch: int = 32
  num_classes: int = 0
  embed_dim: int = 16
  bn_momentum: float = 0.9
  axis_name: str | None = None
  init_scheme: str = 'dcgan'

  @nn.compact
  def __call__(self, z, class_weights=None, train: bool = True):  # z: (B, Z)
    k = num_doublings(self.image_size)
    init = kernel_init(self.init_scheme)
    norm = lambda name: nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                     axis_name=self.axis_name, name=name)
    if self.num_classes:
      embed = nn.Dense(self.embed_dim, use_bias=False, kernel_init=init,
                       name='class_embed')(class_weights)  # (B, E)
      z = jnp.concatenate([z, embed], axis=-1)  # (B, Z + E)
    ch = self.ch * 2 ** (k - 1)
    # No biases before BatchNorm: its shift takes their place.
    h = nn.Dense(4 * 4 * ch, use_bias=False, kernel_init=init, name='project')(z)
    h = nn.relu(norm('norm_project')(h.reshape(z.shape[0], 4, 4, ch)))  # (B, 4, 4, ch)
    for i in range(k - 1):
      ch //= 2
      h = ConvTranspose4x4s2(ch, use_bias=False, kernel_init=init,
                             name=f'up{i}')(h)  # (B, 2H, 2W, ch)
      h = nn.relu(norm(f'norm_up{i}')(h))
    h = ConvTranspose4x4s2(self.channels, kernel_init=init, name='to_image')(h)
    return jnp.tanh(h)  # (B, image_size, image_size, channels)


class DCGANDiscriminator(nn.Module):
  """[Conv 4x4/2 (-> BatchNorm from the second on) -> LeakyReLU(0.2)] x k down to 4x4
  -> Dense(1) (+ projection).

  Attributes:
    image_size: input side, 4 * 2^k.
    ch: channels of the first conv; doubled at every halving.
    num_classes: > 0 adds the projection term for conditional models.
    spectral_norm: wrap every layer in spectral normalisation.
    init_scheme: kernel initialiser name.
    norm: 'batch' normalises every conv but the first by its batch's statistics
      (`BatchStatNorm`, as the DCGAN paper's D); 'none' leaves them unnormalised.
    axis_name: the mapped device axis the batch statistics are averaged over.
  """
  image_size: int = 16
  ch: int = 32
  num_classes: int = 0
  spectral_norm: bool = False
  init_scheme: str = 'dcgan'
  norm: str = 'none'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, class_weights=None, update_stats: bool = True):  # x: (B, H, W, C)
    k = num_doublings(self.image_size)
    init = kernel_init(self.init_scheme)
    h = x
    for i in range(k):
      conv = nn.Conv(self.ch * 2 ** i, (4, 4), strides=(2, 2), padding='SAME',
                     kernel_init=init, name=f'down{i}')
      h = _apply(conv, h, self.spectral_norm, update_stats)  # (B, H/2^(i+1), W/2^(i+1), ch * 2^i)
      if self.norm == 'batch' and i > 0:
        h = BatchStatNorm(axis_name=self.axis_name, name=f'norm_down{i}')(h)
      h = nn.leaky_relu(h, 0.2)
    h = h.reshape(h.shape[0], -1)  # (B, 16 * ch * 2^(k-1))
    return _logit_head(h, class_weights, self.num_classes, self.spectral_norm, init,
                       update_stats)


class MLPGenerator(nn.Module):
  """z -> [Dense -> ReLU] x layers -> Dense to the sample shape (for 2-d toy data).

  Attributes:
    out_shape: shape of one sample, e.g. (2,) for points.
    hidden: width of the hidden layers.
    layers: number of hidden layers.
    num_classes: > 0 makes it conditional (embedding concatenated to z).
    embed_dim: width of the class embedding.
    tanh: squash the output to [-1, 1] (images); points stay unbounded.
    init_scheme: kernel initialiser name.
  """
  out_shape: tuple[int, ...] = (2,)
  hidden: int = 128
  layers: int = 3
  num_classes: int = 0
  embed_dim: int = 16
  tanh: bool = False
  init_scheme: str = 'lecun'

  @nn.compact
  def __call__(self, z, class_weights=None, train: bool = True):  # z: (B, Z)
    del train  # No normalisation layers.
    init = kernel_init(self.init_scheme)
    if self.num_classes:
      z = jnp.concatenate([z, nn.Dense(self.embed_dim, use_bias=False, kernel_init=init,
                                       name='class_embed')(class_weights)], axis=-1)
    h = z
    for i in range(self.layers):
      h = nn.relu(nn.Dense(self.hidden, kernel_init=init, name=f'hidden{i}')(h))  # (B, hidden)
    out = nn.Dense(math.prod(self.out_shape), kernel_init=init, name='out')(h)
    out = out.reshape((z.shape[0],) + tuple(self.out_shape))  # (B, *out_shape)
    return jnp.tanh(out) if self.tanh else out


class MLPDiscriminator(nn.Module):
  """x (flattened) -> [Dense -> LeakyReLU(0.2)] x layers -> Dense(1) (+ projection).

  Attributes:
    hidden: width of the hidden layers.
    layers: number of hidden layers.
    num_classes: > 0 adds the projection term.
    spectral_norm: wrap every layer in spectral normalisation.
    init_scheme: kernel initialiser name.
  """
  hidden: int = 128
  layers: int = 3
  num_classes: int = 0
  spectral_norm: bool = False
  init_scheme: str = 'lecun'

  @nn.compact
  def __call__(self, x, class_weights=None, update_stats: bool = True):  # x: (B, ...)
    init = kernel_init(self.init_scheme)
    h = x.reshape(x.shape[0], -1)  # (B, D)
    for i in range(self.layers):
      dense = nn.Dense(self.hidden, kernel_init=init, name=f'hidden{i}')
      h = nn.leaky_relu(_apply(dense, h, self.spectral_norm, update_stats), 0.2)  # (B, hidden)
    return _logit_head(h, class_weights, self.num_classes, self.spectral_norm, init,
                       update_stats)

