"""The DDPM U-Net: the paper's and the peer benchmark's sizes, shapes, embedding."""

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.models import layers
from gen_jax.models.unet import UNet


def count_params(model, shape):
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape),
                                             jnp.zeros((shape[0],), jnp.int32)))
  return sum(x.size for x in jax.tree.leaves(params))


def test_ddpm_cifar10_net_has_the_papers_size():
  # Ho et al. 2020 report 35.7M; diffusers' port (google/ddpm-cifar10-32) has 35,746,307.
  net = UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,),
             dropout=0.1, num_groups=32)
  assert count_params(net, (1, 32, 32, 3)) == 35_746_307


def test_small_peer_net_size():
  net = UNet(ch=32, ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,), dropout=0.1)
  assert count_params(net, (1, 28, 28, 1)) == 1_623_169


def test_forward_shapes_and_attention_placement():
  net = UNet(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4)
  x = jnp.ones((2, 8, 8, 3))
  params = net.init(jax.random.PRNGKey(0), x, jnp.array([1, 2]))
  out = net.apply(params, x, jnp.array([1, 2]))
  assert out.shape == (2, 8, 8, 3)
  names = set(params['params'])
  attn = sorted(n for n in names if n.startswith('AttnBlock'))
  # One attention after the 4x4 res block going down, one in the middle, two going up.
  assert len(attn) == 4
  # The output conv starts near zero, so the untrained net predicts ~0.
  assert float(jnp.max(jnp.abs(out))) < 1e-3


def test_class_conditioning_changes_the_output():
  net = UNet(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=4,
             num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 1))
  t = jnp.array([5, 5])
  params = net.init(jax.random.PRNGKey(0), x, t, jnp.array([0, 1]))
  # Give the output conv weight so differences show.
  params = jax.tree.map(lambda p: p + 0.1, params)
  a = net.apply(params, x, t, jnp.array([0, 0]))
  b = net.apply(params, x, t, jnp.array([1, 1]))
  assert not np.allclose(a, b)


def test_dropout_is_active_only_in_training():
  net = UNet(ch=8, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), num_groups=4,
             dropout=0.5)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 4, 1))
  t = jnp.array([1, 2])
  params = jax.tree.map(lambda p: p + 0.05, net.init(jax.random.PRNGKey(0), x, t))
  eval_a, eval_b = net.apply(params, x, t), net.apply(params, x, t)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = net.apply(params, x, t, train=True, rngs={'dropout': jax.random.PRNGKey(2)})
  train_b = net.apply(params, x, t, train=True, rngs={'dropout': jax.random.PRNGKey(3)})
  assert not np.allclose(train_a, train_b)


def test_timestep_embedding_closed_form():
  emb = layers.timestep_embedding(jnp.array([0, 7]), 8)
  freqs = 10000.0 ** (-np.arange(4) / 3)
  want = np.concatenate([np.sin(7 * freqs), np.cos(7 * freqs)])
  np.testing.assert_allclose(emb[1], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(emb[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_bfloat16_compute_keeps_float32_parameters_and_tracks_the_float32_net():
  kwargs = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_groups=4,
                num_classes=3)
  net32, net16 = UNet(**kwargs), UNet(**kwargs, dtype=jnp.bfloat16)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x, t, y = jax.random.normal(keys[0], (4, 8, 8, 3)), jnp.array([0, 10, 500, 999]), jnp.arange(4) % 3
  shapes = jax.eval_shape(lambda: net32.init(keys[1], x, t, y))
  assert jax.eval_shape(lambda: net16.init(keys[1], x, t, y)) == shapes  # float32 parameters
  # Random weights everywhere (the zero-initialised last convs would hide every difference).
  leaves, tree = jax.tree.flatten(shapes)
  rng = np.random.default_rng(0)
  params = jax.tree.unflatten(tree, [jnp.asarray(0.2 * rng.standard_normal(p.shape), jnp.float32)
                                     for p in leaves])
  out32, out16 = (jax.jit(net.apply)(params, x, t, y) for net in (net32, net16))
  assert out16.dtype == jnp.float32 and out16.shape == out32.shape
  rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
  assert 1e-4 < rel < 0.05, rel  # bfloat16 rounding (8 mantissa bits), not another function

  def grads(net):
    return jax.jit(jax.grad(lambda p: jnp.mean(net.apply(p, x, t, y) ** 2)))(params)

  g32, g16 = jax.tree.leaves(grads(net32)), jax.tree.leaves(grads(net16))
  assert all(g.dtype == jnp.float32 for g in g16)
  flat32, flat16 = jnp.concatenate([g.ravel() for g in g32]), jnp.concatenate([g.ravel() for g in g16])
  cosine = float(flat32 @ flat16 / (jnp.linalg.norm(flat32) * jnp.linalg.norm(flat16)))
  assert cosine > 0.99, cosine
