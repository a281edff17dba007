"""BigGAN (Brock et al. 2019) players as flax.linen modules, after BigGAN-PyTorch.

Generator: z is split into chunks (the hierarchical latent): the first feeds a linear
layer to a (4, 4) map; each ResNet up-block gets [shared class embedding, its own chunk]
as the input of its class-conditional BatchNorms, whose gains (1 + linear) and biases
(linear) are projections of that vector. A non-local attention block follows the block
at `attn_res`; the output is BatchNorm -> ReLU -> 3x3 conv -> tanh.

Discriminator: ResNet down-blocks (the first without pre-activation, so its shortcut
sees the raw image: downsample then 1x1 conv), attention at `attn_res`, ReLU, a sum over
space and a projection head <embed(y), h> for the class (Miyato & Koyama 2018).

Every weight layer of both players except G's shared embedding is spectrally
normalised ('spectral' collection). Every BatchNorm of G averages its batch statistics
over the mapped `axis_name` (cross-replica BatchNorm), so the statistics are those of the
global batch whatever the number of devices. Channel widths are `ch * ch_mults[i]`, as in
BigGAN-PyTorch's G_arch / D_arch (128x128: G (16, 8, 4, 2, 1), D (1, 2, 4, 8, 16, 16)).
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models import layers
from gen_jax.models.dcgan import SPECTRAL, kernel_init


def _sn(layer: nn.Module, x, update_stats: bool):
  """layer(x), with the layer's kernel divided by its spectral norm (one power step)."""
  return nn.SpectralNorm(layer, collection_name=SPECTRAL)(x, update_stats=update_stats)


def z_chunks(z_dim: int, num_blocks: int, hierarchical: bool) -> list[int]:
  """Sizes of the latent's pieces: [input layer, block 0, ..., block n-1].

  Hierarchical: z_dim splits into num_blocks + 1 equal chunks (z_dim must divide), as
  BigGAN-PyTorch's `hier`; otherwise the input layer takes all of z and blocks none.
  """
  if not hierarchical:
    return [z_dim] + [0] * num_blocks
  if z_dim % (num_blocks + 1):
    raise ValueError(f'z_dim={z_dim} must be a multiple of the {num_blocks + 1} chunks '
                     f'(one per block plus the input) of the hierarchical latent.')
  return [z_dim // (num_blocks + 1)] * (num_blocks + 1)


def split_z(z, num_blocks: int, hierarchical: bool) -> list[jax.Array]:
  """z (B, Z) -> [input chunk, block 0 chunk, ...] per `z_chunks` ((B, 0) when none)."""
  sizes = z_chunks(z.shape[-1], num_blocks, hierarchical)
  offsets = [sum(sizes[:i]) for i in range(len(sizes))]
  return [z[:, o:o + s] for o, s in zip(offsets, sizes)]


class ConditionalBatchNorm(nn.Module):
  """BatchNorm without its own affine, then x * (1 + W_g c) + W_b c per example.

  Attributes:
    momentum: decay of the running statistics.
    epsilon: BatchNorm's epsilon.
    axis_name: the device axis the batch statistics are averaged over (cross-replica).
    spectral_norm: spectrally normalise the gain and bias projections.
    init_scheme: kernel initialiser name (see `dcgan.kernel_init`).
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: str | None = None
  spectral_norm: bool = True
  init_scheme: str = 'orthogonal'

  @nn.compact
  def __call__(self, x, cond, train: bool):  # x: (B, H, W, C), cond: (B, E)
    c = x.shape[-1]
    h = nn.BatchNorm(use_running_average=not train, momentum=self.momentum,
                     epsilon=self.epsilon, use_scale=False, use_bias=False,
                     axis_name=self.axis_name, name='bn')(x)
    init = kernel_init(self.init_scheme)
    gain_layer = nn.Dense(c, use_bias=False, kernel_init=init, name='gain')
    bias_layer = nn.Dense(c, use_bias=False, kernel_init=init, name='bias')
    if self.spectral_norm:
      gain, bias = _sn(gain_layer, cond, train), _sn(bias_layer, cond, train)  # (B, C) each
    else:
      gain, bias = gain_layer(cond), bias_layer(cond)
    return h * (1.0 + gain)[:, None, None, :] + bias[:, None, None, :]


class Attention(nn.Module):
  """Non-local block (SAGAN / BigGAN-PyTorch's Attention): x + gamma * o(attend(x)).

  theta, phi: 1x1 convs to C/8; g: 1x1 conv to C/2; phi and g max-pooled 2x2, so every
  pixel attends over H*W/4 positions; o: 1x1 conv back to C; gamma starts at 0, so the
  block starts as the identity.
  """
  init_scheme: str = 'orthogonal'

  @nn.compact
  def __call__(self, x, update_stats: bool):  # (B, H, W, C)
    b, height, width, c = x.shape
    init = kernel_init(self.init_scheme)
    conv = lambda features, name, h: _sn(
        nn.Conv(features, (1, 1), use_bias=False, kernel_init=init, name=name), h, update_stats)
    pool = lambda h: nn.max_pool(h, (2, 2), strides=(2, 2))
    theta = conv(c // 8, 'theta', x).reshape(b, height * width, c // 8)  # (B, N, C/8)
    phi = pool(conv(c // 8, 'phi', x)).reshape(b, -1, c // 8)  # (B, N/4, C/8)
    g = pool(conv(c // 2, 'g', x)).reshape(b, -1, c // 2)  # (B, N/4, C/2)
    beta = jax.nn.softmax(jnp.einsum('bnc,bmc->bnm', theta, phi), axis=-1)  # (B, N, N/4)
    o = jnp.einsum('bnm,bmc->bnc', beta, g).reshape(b, height, width, c // 2)
    o = conv(c, 'o', o)  # (B, H, W, C)
    gamma = self.param('gamma', nn.initializers.zeros, ())
    return x + gamma * o


class UpConv(nn.Module):
  """conv3x3(nearest 2x upsample(x)) + bias, computed at the input resolution.

  Exactly the 3x3 'SAME' convolution of the upsampled map, with the parameters of an
  `nn.Conv(features, (3, 3))` (kernel (3, 3, I, O), bias (O,)), so spectral norm and
  checkpoints see the same layer; each of the 4 output phases is a 2x2 convolution of
  the input, 16 taps on H*W positions instead of 9 on 4*H*W (2.25x fewer FLOPs): the
  U-Net's `layers.upsample_conv`, with BigGAN's initialiser.
  """
  features: int
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):  # (B, H, W, I) -> (B, 2H, 2W, O)
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    return layers.upsample_conv(x, kernel, bias)


class ConvPool(nn.Module):
  """avg_pool_2x2(conv3x3(x) + bias), computed as one 4x4 convolution of stride 2.

  Exactly the 'SAME' 3x3 convolution followed by 2x2 average pooling, with the parameters
  of an `nn.Conv(features, (3, 3))` (kernel (3, 3, I, O), bias (O,)), so spectral norm and
  checkpoints see the same layer. A pooled output pixel averages four 3x3 windows that
  together read input rows 2i-1 .. 2i+2: the 4x4 kernel is the 3x3 kernel summed over
  the four 2x2 shifts, divided by 4. 16 taps on H*W/4 positions instead of 9 on H*W
  (2.25x fewer FLOPs), and no pooling pass.
  """
  features: int
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):  # (B, H, W, I) -> (B, H // 2, W // 2, O)
    kernel = self.param('kernel', self.kernel_init, (3, 3, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    # Row u of the 4x4 kernel (input offset u - 1): 3x3 rows u (pooled row 0) + u - 1 (row 1).
    shift = lambda k, axis: (jnp.pad(k, [(0, 1) if a == axis else (0, 0) for a in range(4)])
                             + jnp.pad(k, [(1, 0) if a == axis else (0, 0) for a in range(4)]))
    kernel4 = shift(shift(kernel, 0), 1) / 4  # (4, 4, I, O)
    y = jax.lax.conv_general_dilated(x, kernel4, (2, 2), ((1, 1), (1, 1)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + bias  # (B, H // 2, W // 2, O)


class GBlock(nn.Module):
  """ccbn -> ReLU -> 2x nearest -> conv3x3 -> ccbn -> ReLU -> conv3x3, plus the
  upsampled input through a 1x1 conv (its channels change or it is upsampled)."""
  out_ch: int
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None
  init_scheme: str = 'orthogonal'

  @nn.compact
  def __call__(self, x, cond, train: bool):  # x: (B, H, W, C) -> (B, 2H, 2W, out_ch)
    init = kernel_init(self.init_scheme)
    bn = lambda name: ConditionalBatchNorm(self.bn_momentum, self.bn_epsilon, self.axis_name,
                                           init_scheme=self.init_scheme, name=name)
    conv = lambda k, name, h: _sn(nn.Conv(self.out_ch, (k, k), kernel_init=init, name=name),
                                  h, train)
    up = lambda h: jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)  # nearest 2x
    # conv3x3(up(.)) as one UpConv, and the 1x1 shortcut before the upsampling: the same
    # maps as BigGAN-PyTorch's up-then-conv, at a quarter of the positions.
    h = _sn(UpConv(self.out_ch, kernel_init=init, name='conv1'),
            nn.relu(bn('bn1')(x, cond, train)), train)  # (B, 2H, 2W, out_ch)
    h = conv(3, 'conv2', nn.relu(bn('bn2')(h, cond, train)))  # (B, 2H, 2W, out_ch)
    return h + up(conv(1, 'conv_sc', x))


class DBlock(nn.Module):
  """[ReLU ->] conv3x3 -> ReLU -> conv3x3 [-> avgpool 2x2], plus a shortcut.

  Shortcut (BigGAN-PyTorch's DBlock): 1x1 conv and downsampling of the block's input (not
  its ReLU), with a conv when the channels change or the block downsamples. The last conv
  and the pooling run as one `ConvPool`.
  """
  out_ch: int
  downsample: bool = True
  preactivation: bool = True
  init_scheme: str = 'orthogonal'

  @nn.compact
  def __call__(self, x, update_stats: bool):  # (B, H, W, C) -> (B, H', W', out_ch)
    init = kernel_init(self.init_scheme)
    conv = lambda k, name, h: _sn(nn.Conv(self.out_ch, (k, k), kernel_init=init, name=name),
                                  h, update_stats)
    pool = lambda h: nn.avg_pool(h, (2, 2), strides=(2, 2)) if self.downsample else h
    h = nn.relu(x) if self.preactivation else x
    h = nn.relu(conv(3, 'conv1', h))
    if self.downsample:  # pool(conv3x3(h)) as one stride-2 4x4 convolution, exactly
      h = _sn(ConvPool(self.out_ch, kernel_init=init, name='conv2'), h, update_stats)
    else:
      h = conv(3, 'conv2', h)
    if self.downsample or x.shape[-1] != self.out_ch:
      # BigGAN-PyTorch pools after the 1x1 conv with pre-activation and before it without;
      # both linear, they commute exactly, so pool first: a quarter of the positions.
      x = conv(1, 'conv_sc', pool(x))
    return h + x


class BigGANGenerator(nn.Module):
  """(z, class weights) -> images in [-1, 1]; see the module docstring.

  Attributes:
    channels: output channels.
    ch: width multiplier; block i has ch * ch_mults[i] output channels, block 0 takes
      ch * ch_mults[0] at 4x4. The output side is 4 * 2^len(ch_mults).
    ch_mults: per-block channel multipliers.
    num_classes: classes of the (soft) class weights; 0 for an unconditional G.
    shared_dim: width of the shared class embedding (0: the BatchNorm projections read
      the class weights directly, BigGAN-PyTorch without G_shared).
    hierarchical: split z over the input layer and the blocks (else all to the input).
    attn_res: resolution of the block output followed by attention (0: none).
    bn_momentum, bn_epsilon: BatchNorm running-statistics decay and epsilon.
    axis_name: device axis of the cross-replica BatchNorm statistics (None: one device).
    init_scheme: kernel initialiser name ('orthogonal' in BigGAN).
  """
  channels: int = 3
  ch: int = 64
  ch_mults: Sequence[int] = (4, 4, 4)
  num_classes: int = 0
  shared_dim: int = 128
  hierarchical: bool = True
  attn_res: int = 0
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None
  init_scheme: str = 'orthogonal'

  @nn.compact
  def __call__(self, z, class_weights=None, train: bool = True):  # z: (B, Z)
    init = kernel_init(self.init_scheme)
    num_blocks = len(self.ch_mults)
    chunks = split_z(z, num_blocks, self.hierarchical)  # [(B, Z0), (B, Z1), ...]
    if self.num_classes:
      y = class_weights  # (B, K)
      if self.shared_dim:  # one embedding shared by every block; not spectrally normalised
        y = nn.Dense(self.shared_dim, use_bias=False, kernel_init=init,
                     name='shared')(class_weights)  # (B, shared_dim)
    else:
      y = jnp.zeros((z.shape[0], 0), z.dtype)
    width = self.ch * self.ch_mults[0]
    h = _sn(nn.Dense(4 * 4 * width, kernel_init=init, name='linear'), chunks[0], train)
    h = h.reshape(z.shape[0], 4, 4, width)  # (B, 4, 4, ch * ch_mults[0])
    for i, mult in enumerate(self.ch_mults):
      cond = jnp.concatenate([y, chunks[i + 1]], axis=-1)  # (B, shared_dim + Z_i)
      h = GBlock(self.ch * mult, self.bn_momentum, self.bn_epsilon, self.axis_name,
                 self.init_scheme, name=f'block{i}')(h, cond, train)  # side 4 * 2^(i+1)
      if h.shape[1] == self.attn_res:
        h = Attention(self.init_scheme, name=f'attn{i}')(h, train)
    h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, axis_name=self.axis_name, name='bn_out')(h)
    h = _sn(nn.Conv(self.channels, (3, 3), kernel_init=init, name='to_image'), nn.relu(h),
            train)
    return jnp.tanh(h)  # (B, 4 * 2^len(ch_mults), ..., channels)


class BigGANDiscriminator(nn.Module):
  """(images, class weights) -> logits (B,); see the module docstring.

  Attributes:
    ch: width multiplier; block i has ch * ch_mults[i] channels.
    ch_mults: per-block channel multipliers.
    num_down: the first num_down blocks halve the resolution (the rest keep it).
    num_classes: classes for the projection head (0: unconditional).
    attn_res: attention follows the first block whose output has this side (0: none).
    init_scheme: kernel initialiser name.
  """
  ch: int = 64
  ch_mults: Sequence[int] = (4, 4, 4, 4)
  num_down: int = 2
  num_classes: int = 0
  attn_res: int = 0
  init_scheme: str = 'orthogonal'

  @nn.compact
  def __call__(self, x, class_weights=None, update_stats: bool = True):  # x: (B, H, W, C)
    init = kernel_init(self.init_scheme)
    h, attended = x, False
    for i, mult in enumerate(self.ch_mults):
      h = DBlock(self.ch * mult, downsample=i < self.num_down, preactivation=i > 0,
                 init_scheme=self.init_scheme, name=f'block{i}')(h, update_stats)
      if h.shape[1] == self.attn_res and not attended:  # once, after the first match
        h, attended = Attention(self.init_scheme, name=f'attn{i}')(h, update_stats), True
    h = jnp.sum(nn.relu(h), axis=(1, 2))  # (B, F)
    logit = _sn(nn.Dense(1, kernel_init=init, name='linear'), h, update_stats)[:, 0]  # (B,)
    if self.num_classes:
      embed = _sn(nn.Dense(h.shape[-1], use_bias=False, kernel_init=init, name='embed'),
                  class_weights, update_stats)  # (B, F)
      logit = logit + jnp.sum(embed * h, axis=-1)
    return logit
