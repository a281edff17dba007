"""Inception-v3 as the standard FID uses it, in flax.linen, with its preprocessing and weights.

The network is pytorch-fid's `fid_inception_v3()`: torchvision's Inception-v3 with the
`FIDInceptionA/C/E_1/E_2` blocks that reproduce TensorFlow's 2015 graph
(`inception-2015-12-05`, the one every published FID and IS number was measured with):

- the 3x3 average pools inside the A, C and first E blocks ignore the zero padding
  (`count_include_pad=False`, as TF's avg_pool does);
- the last E block (Mixed_7c) pools its fourth branch with a max pool (a quirk of the TF graph);
- the classifier has 1008 outputs (TF's 1000 ImageNet classes plus 8 unused ones);
- BatchNorm in inference mode with eps 1e-3, convolutions without bias.

Outputs are the pool3 features (B, 2048) that FID, KID and precision/recall use, and the 1008
logits of the final layer, pool3 @ W + b. The Inception Score takes the softmax of the logits
*without* the bias, pool3 @ W (`unbiased_logits`): the original IS code (Salimans et al. 2016,
its `tf.matmul(pool3, w)`) and torch-fidelity ('logits_unbiased') compute it so.

Weights are loaded by `gen_jax.evaluation.inception_weights` (pytorch-fid's .pth, read
without torch).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_SIZE = 299
NUM_LOGITS = 1008
FEATURE_DIM = 2048

# FID is sensitive to small feature shifts; XLA's default float32 convolutions on GPU use
# TF32 (10-bit mantissa) and on TPU bfloat16 passes, so ask for full float32 everywhere.
_PRECISION = jax.lax.Precision.HIGHEST


class BasicConv2d(nn.Module):
  """Conv (no bias) -> BatchNorm (running statistics, eps 1e-3) -> ReLU: torchvision's block."""
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)  # symmetric (rows, columns), as torch's Conv2d padding

  @nn.compact
  def __call__(self, x):  # (B, H, W, C) -> (B, H', W', features)
    (ph, pw), s = self.padding, self.strides
    x = nn.Conv(self.features, self.kernel_size, strides=(s, s), padding=((ph, ph), (pw, pw)),
                use_bias=False, precision=_PRECISION, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3(x):  # (B, H, W, C), same size; TF's pool: padded zeros are not averaged
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_stride2(x):  # (B, H, W, C) -> (B, (H-3)//2+1, (W-3)//2+1, C)
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class InceptionA(nn.Module):
  """Mixed_5b..5d (FIDInceptionA): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):  # (B, 35, 35, C) -> (B, 35, 35, 224 + pool_features)
    b1 = BasicConv2d(64, (1, 1), name='branch1x1')(x)
    b5 = BasicConv2d(48, (1, 1), name='branch5x5_1')(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv2d(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a, the 35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""

  @nn.compact
  def __call__(self, x):  # (B, 35, 35, 288) -> (B, 17, 17, 768)
    b3 = BasicConv2d(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = BasicConv2d(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv2d(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e (FIDInceptionC): factorised 7x7 convolutions as 1x7 and 7x1."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):  # (B, 17, 17, 768) -> (B, 17, 17, 768)
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, (1, 1), name='branch1x1')(x)
    b7 = BasicConv2d(c7, (1, 1), name='branch7x7_1')(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv2d(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv2d(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a, the 17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""

  @nn.compact
  def __call__(self, x):  # (B, 17, 17, 768) -> (B, 8, 8, 1280)
    b3 = BasicConv2d(192, (1, 1), name='branch3x3_1')(x)
    b3 = BasicConv2d(320, (3, 3), strides=2, name='branch3x3_2')(b3)
    b7 = BasicConv2d(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv2d(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (FIDInceptionE_1, avg pool branch) and Mixed_7c (FIDInceptionE_2, max pool)."""
  pool: str  # 'avg' or 'max'

  @nn.compact
  def __call__(self, x):  # (B, 8, 8, C) -> (B, 8, 8, 2048)
    b1 = BasicConv2d(320, (1, 1), name='branch1x1')(x)
    b3 = BasicConv2d(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
    bd = BasicConv2d(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
    if self.pool == 'avg':
      pooled = _avg_pool_3x3(x)
    else:  # flax pads max pools with -inf, as torch's max_pool2d(padding=1) does
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = BasicConv2d(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """The FID Inception-v3; submodule names are the PyTorch state_dict's (see `torch_key`)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: (B, 299, 299, 3) from `preprocess`. -> (pool3 (B, 2048), logits (B, 1008))."""
    x = BasicConv2d(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)  # (B, 149, 149, 32)
    x = BasicConv2d(32, (3, 3), name='Conv2d_2a_3x3')(x)  # (B, 147, 147, 32)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_stride2(x)  # (B, 73, 73, 64)
    x = BasicConv2d(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv2d(192, (3, 3), name='Conv2d_4a_3x3')(x)  # (B, 71, 71, 192)
    x = _max_pool_3x3_stride2(x)  # (B, 35, 35, 192)
    x = InceptionA(32, name='Mixed_5b')(x)  # (B, 35, 35, 256)
    x = InceptionA(64, name='Mixed_5c')(x)  # (B, 35, 35, 288)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)  # (B, 17, 17, 768)
    x = InceptionC(128, name='Mixed_6b')(x)
    x = InceptionC(160, name='Mixed_6c')(x)
    x = InceptionC(160, name='Mixed_6d')(x)
    x = InceptionC(192, name='Mixed_6e')(x)
    x = InceptionD(name='Mixed_7a')(x)  # (B, 8, 8, 1280)
    x = InceptionE('avg', name='Mixed_7b')(x)  # (B, 8, 8, 2048)
    x = InceptionE('max', name='Mixed_7c')(x)
    pool = jnp.mean(x, axis=(1, 2))  # (B, 2048): adaptive average pool to 1x1
    logits = nn.Dense(NUM_LOGITS, precision=_PRECISION, name='fc')(pool)  # (B, 1008)
    return pool, logits


# ---------------------------------------------------------------------------------------------
# Preprocessing.


def quantize(images: jax.Array) -> jax.Array:
  """The 256 levels a saved PNG holds, as float32 (the same rounding as `viz.to_uint8`).

  Args:
    images: (B, H, W, C) uint8, or floats in [-1, 1].
  Returns:
    (B, H, W, C) float32 integers in [0, 255].
  """
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32)
  levels = jnp.round((images.astype(jnp.float32) + 1.0) * 127.5)  # round half to even, as numpy
  return jnp.clip(levels, 0.0, 255.0)


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """Bilinear resize to (size, size) as pytorch-fid's F.interpolate(align_corners=False).

  pytorch-fid resizes with `F.interpolate(mode='bilinear', align_corners=False)`: half-pixel
  centres (src = (dst + 0.5) * in/out - 0.5), source coordinates clamped at the border, and no
  antialiasing when shrinking. `jax.image.resize(..., 'bilinear')` uses the same half-pixel
  centres and, with `antialias=False`, the same 2-tap triangle kernel in both directions; its
  border renormalisation equals torch's clamping. (Its default antialias=True would low-pass
  filter when downsampling, e.g. 512 -> 299, and no longer match.) Checked against torch on
  16x16, 32x32 (up) and 400x333 (down) inputs: max abs difference 1.2e-7 on [0, 1] images;
  torch computes source coordinates in float32, and so, to that precision, does this.

  Args:
    images: (B, H, W, C) floats.
    size: output height and width.
  Returns:
    (B, size, size, C) float32.
  """
  b, _, _, c = images.shape
  return jax.image.resize(images.astype(jnp.float32), (b, size, size, c), method='bilinear',
                          antialias=False)


def preprocess(images: jax.Array) -> jax.Array:
  """Generated or dataset images -> the FID Inception's input, as pytorch-fid prepares PNGs.

  Quantise to uint8 levels (what a saved PNG would hold), scale to [0, 1], resize bilinearly to
  299x299, scale to [-1, 1] (pytorch-fid's order of operations); grayscale repeats to RGB.

  Args:
    images: (B, H, W, C) with C in {1, 3}: uint8, or floats in [-1, 1].
  Returns:
    (B, 299, 299, 3) float32 in [-1, 1].
  """
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'expected (B, H, W, 1 or 3) images, got shape {images.shape}')
  x = quantize(jnp.asarray(images)) / 255.0  # (B, H, W, C) in [0, 1]
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return 2.0 * resize_bilinear(x) - 1.0  # (B, 299, 299, 3)


def unbiased_logits(variables: Any, pool: jax.Array) -> jax.Array:
  """pool3 @ W, the final layer without its bias: the logits the Inception Score uses.

  Args:
    variables: the InceptionV3 variables (`params` holds `fc`'s kernel (2048, 1008)).
    pool: (B, 2048) pool3 features.
  Returns:
    (B, 1008) logits; the biased ones, pool3 @ W + b, are the model's second output.
  """
  return jnp.dot(pool, variables['params']['fc']['kernel'], precision=_PRECISION)


@jax.jit
def inception_outputs(variables: Any, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """preprocess + InceptionV3 in one compiled call: (B, H, W, C) -> ((B, 2048), (B, 1008))."""
  return InceptionV3().apply(variables, preprocess(images))
