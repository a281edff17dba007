"""Rewritten layers equal their plain flax versions: forward, gradients, parameter tree."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.models import layers
from gen_jax.models.unet import UNet


def _random_params(shapes, offset=0.0):
  """Random values (numpy: no compilation per shape) for a tree of ShapeDtypeStructs."""
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(offset + 0.3 * rng.standard_normal(s.shape),
                                            jnp.float32), shapes)


@pytest.mark.parametrize('shape,groups,silu', [((2, 4, 4, 6), 2, False),
                                               ((2, 7, 7, 64), 32, True)])
def test_group_norm_equals_flax_forward_and_gradients(shape, groups, silu):
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  x = 3.0 * jax.random.normal(keys[0], shape) + 1.5  # offset: exercises E[x^2] - E[x]^2
  plain, fused = PlainGroupNorm(groups, silu=silu), layers.GroupNorm(groups, silu=silu)
  shapes = jax.eval_shape(lambda: plain.init(keys[1], x))
  assert jax.eval_shape(lambda: fused.init(keys[1], x)) == shapes
  params = _random_params(shapes, offset=1.0)
  np.testing.assert_allclose(fused.apply(params, x), plain.apply(params, x),
                             rtol=1e-5, atol=1e-5)
  _assert_same_gradients(fused, plain, params, x, jax.random.normal(keys[3], shape),
                         x_atol=1e-5, params_atol=1e-4)


def _assert_same_gradients(fused, plain, params, x, dy, x_atol, params_atol):
  """The two modules' gradients of sum(f(x) * dy), for the input and every parameter."""
  grad = lambda m: jax.jit(jax.grad(lambda p, x: jnp.sum(m.apply(p, x) * dy), argnums=(0, 1)))(
      params, x)
  (gp_fused, gx_fused), (gp_plain, gx_plain) = grad(fused), grad(plain)
  np.testing.assert_allclose(gx_fused, gx_plain, rtol=1e-4, atol=x_atol)
  for a, b in zip(jax.tree.leaves(gp_fused), jax.tree.leaves(gp_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=params_atol)


class PlainGroupNorm(nn.GroupNorm):
  """flax's GroupNorm (+ SiLU) with `layers.GroupNorm`'s signature: the U-Net's old norm."""
  silu: bool = False

  def __call__(self, x, *args, **kwargs):
    h = super().__call__(x, *args, **kwargs)
    return nn.silu(h) if self.silu else h


def _with_flax_group_norm(monkeypatch, fn):
  """fn() with every `layers.GroupNorm` swapped for flax's (the U-Net's previous norm)."""
  with monkeypatch.context() as m:
    m.setattr(layers, 'GroupNorm', PlainGroupNorm)
    return fn()


def test_unet_parameter_tree_is_unchanged(monkeypatch):
  # Checkpoints saved with flax's GroupNorm keep loading: the same names and shapes.
  net = UNet(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,), dropout=0.1)
  x, t = jnp.zeros((1, 28, 28, 1)), jnp.zeros((1,), jnp.int32)
  init = lambda: jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, t))
  new, ref = init(), _with_flax_group_norm(monkeypatch, init)
  assert jax.tree.structure(new) == jax.tree.structure(ref)
  assert jax.tree.map(jnp.shape, new) == jax.tree.map(jnp.shape, ref)


def test_res_block_equals_the_flax_groupnorm_block(monkeypatch):
  block = layers.ResBlock(12, num_groups=4, dropout=0.1)  # 8 -> 12 channels: the skip Dense too
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  x, temb = jax.random.normal(keys[0], (2, 6, 6, 8)), jax.random.normal(keys[1], (2, 16))

  def run(p):  # -> (eval output, training-loss gradients), traced anew each call
    def outputs(p):
      apply = lambda p, train: block.apply(p, x, temb, train, rngs={'dropout': keys[3]})
      return apply(p, False), jax.grad(lambda p: jnp.mean(apply(p, True) ** 2))(p)
    return jax.jit(outputs)(p)

  params = _random_params(jax.eval_shape(lambda: block.init(keys[2], x, temb, False)))
  out_new, grad_new = run(params)
  out_ref, grad_ref = _with_flax_group_norm(monkeypatch, lambda: run(params))
  np.testing.assert_allclose(out_new, out_ref, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(grad_new), jax.tree.leaves(grad_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize('shape', [(2, 7, 5, 3), (2, 14, 14, 64)])
def test_upsample_conv_equals_resize_then_conv(shape):
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  x = jax.random.normal(keys[0], shape)
  fused, plain = layers.Upsample(with_conv=True), PlainUpsample()
  shapes = jax.eval_shape(lambda: plain.init(keys[1], x))
  assert jax.eval_shape(lambda: fused.init(keys[1], x)) == shapes  # checkpoints keep loading
  params = _random_params(shapes)
  out = fused.apply(params, x)
  assert out.shape == (shape[0], 2 * shape[1], 2 * shape[2], shape[3])
  np.testing.assert_allclose(out, plain.apply(params, x), rtol=1e-4, atol=1e-4)
  _assert_same_gradients(fused, plain, params, x, jax.random.normal(keys[2], out.shape),
                         x_atol=1e-3, params_atol=1e-3)


class PlainUpsample(nn.Module):
  """The U-Net's previous upsampling: resize 2x (nearest), then nn.Conv 3x3 named 'conv'."""

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    x = jax.image.resize(x, (b, 2 * h, 2 * w, c), method='nearest')
    return nn.Conv(c, (3, 3), kernel_init=layers.default_init, name='conv')(x)
