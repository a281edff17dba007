"""BigGAN units: orthogonal regularization against its closed form, class-conditional
BatchNorm against its formula, the hierarchical z split, attention at init, standing
statistics against the batch statistics, G's up-convolution against the plain one, and the
configs' parameter counts."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import biggan as biggan_config
from configs import biggan_cifar10
from configs import biggan_imagenet128
from experiments.gan import checks as gan_checks
from experiments.gan import experiment as gan_experiment
from gen_jax.core import parallel
from gen_jax.models import biggan
from gen_jax.objectives import gan

# N(0, 0.02) init: the orthogonal initialiser compiles a QR per kernel shape (seconds each).
TINY = dict(channels=1, ch=4, ch_mults=(4, 2), num_classes=10, shared_dim=6, attn_res=8,
            init_scheme='dcgan')


def test_orthogonal_regularization_matches_closed_form():
  # W (fan_in 3, out 2): W^T W = [[2, 1], [1, 5]]; off-diagonal squares: 1 + 1 = 2.
  w = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
  # A conv kernel (1, 1, 2, 2) is W = [[1, 2], [3, 4]] as (fan_in, out): W^T W off-diagonal
  # is 1*2 + 3*4 = 14, twice squared: 392.
  conv = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
  params = {'a': {'kernel': w, 'bias': jnp.ones((2,))}, 'conv': {'kernel': conv},
            'shared': {'kernel': 10 * jnp.ones((4, 3))}}
  assert float(gan.orthogonal_regularization(params, exclude=('shared',))) == pytest.approx(
      2.0 + 392.0)
  # The gradient of ||W^T W * (1 - I)||^2 is 4 W (W^T W * (1 - I)).
  grad = jax.grad(lambda p: gan.orthogonal_regularization({'k': p}))(w)
  off = np.array([[0.0, 1.0], [1.0, 0.0]])
  np.testing.assert_allclose(grad, 4 * np.asarray(w) @ off, rtol=1e-6)
  # Orthonormal columns are not penalised, whatever their scale.
  q = 3.0 * jnp.eye(4)[:, :3]
  assert float(gan.orthogonal_regularization({'k': q})) == 0.0


def test_conditional_batchnorm_normalises_then_applies_class_gain_and_bias():
  x = jax.random.normal(jax.random.key(0), (6, 3, 3, 5)) * 2.0 + 1.0  # (B, H, W, C)
  cond = jax.random.normal(jax.random.key(1), (6, 7))  # (B, E)
  module = biggan.ConditionalBatchNorm(spectral_norm=False, init_scheme='dcgan')
  variables = module.init(jax.random.key(2), x, cond, train=False)
  wg = np.asarray(variables['params']['gain']['kernel'])
  wb = np.asarray(variables['params']['bias']['kernel'])
  assert wg.shape == wb.shape == (7, 5)
  y, new = module.apply(variables, x, cond, train=True, mutable=['batch_stats'])
  xn = np.asarray(x, np.float64)
  mean, var = xn.mean((0, 1, 2)), xn.var((0, 1, 2))
  want = ((xn - mean) / np.sqrt(var + 1e-5) * (1 + np.asarray(cond) @ wg)[:, None, None]
          + (np.asarray(cond) @ wb)[:, None, None])
  np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
  # Running statistics: momentum 0.9 from (0, 1).
  np.testing.assert_allclose(new['batch_stats']['bn']['mean'], 0.1 * mean, rtol=1e-4)
  # With spectral norm the projections keep their shapes and outputs their shape.
  sn = biggan.ConditionalBatchNorm(init_scheme='dcgan')
  v = sn.init(jax.random.key(2), x, cond, train=False)
  assert v['params']['gain']['kernel'].shape == (7, 5) and 'spectral' in v
  assert sn.apply(v, x, cond, train=False).shape == x.shape


def test_hierarchical_z_split():
  assert biggan.z_chunks(120, 5, True) == [20] * 6  # the ImageNet 128 generator
  assert biggan.z_chunks(128, 3, False) == [128, 0, 0, 0]
  with pytest.raises(ValueError, match='multiple of the 4 chunks'):
    biggan.z_chunks(10, 3, True)
  z = jnp.arange(12.0).reshape(2, 6)
  parts = biggan.split_z(z, 2, True)
  assert [p.shape for p in parts] == [(2, 2)] * 3
  np.testing.assert_array_equal(jnp.concatenate(parts, -1), z)
  # Block i's BatchNorm projections read [shared embedding (6), chunk i (4)].
  g = biggan.BigGANGenerator(**TINY)
  z, cw = jnp.ones((2, 12)), jax.nn.one_hot(jnp.array([1, 2]), 10)
  variables = g.init(jax.random.key(0), z, cw, train=False)
  params = variables['params']
  assert params['linear']['kernel'].shape == (4, 4 * 4 * 16)  # the input chunk only
  for i, ch in enumerate((16, 8)):
    assert params[f'block{i}']['bn1']['gain']['kernel'].shape[0] == 6 + 4
    assert params[f'block{i}']['bn2']['bias']['kernel'].shape == (10, ch)
  # Block 1's chunk (z[:, 8:12]) enters at block 1: block 0's output ignores it, the image not.
  @jax.jit
  def run(z):
    out, inter = g.apply(variables, z, cw, train=False, mutable=['intermediates'],
                         capture_intermediates=lambda m, _: m.name == 'block0')
    return out, inter['intermediates']['block0']['__call__'][0]
  out, h0 = run(z)
  out2, h0_2 = run(z.at[:, 8:].set(-1.0))
  np.testing.assert_array_equal(h0, h0_2)
  assert float(jnp.abs(out - out2).max()) > 1e-4


def _up(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest 2x


def test_upconv_is_the_3x3_conv_of_the_nearest_upsampled_input():
  """UpConv (4 phase 2x2 convs at the input resolution) against nn.Conv(3x3, 'SAME') on
  the upsampled map with the same kernel and bias, also under spectral norm, where the
  power iteration must see the same (3, 3, I, O) kernel."""
  x = jax.random.normal(jax.random.key(0), (2, 5, 3, 4))  # odd, non-square: edges matter
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
  bias = jax.random.normal(jax.random.key(2), (6,))
  variables = {'params': {'kernel': kernel, 'bias': bias}}
  y = biggan.UpConv(6).apply(variables, x)
  assert y.shape == (2, 10, 6, 6)
  np.testing.assert_allclose(y, nn.Conv(6, (3, 3)).apply(variables, _up(x)), rtol=1e-5,
                             atol=1e-5)

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x):
      return biggan._sn(nn.Conv(6, (3, 3), name='c'), _up(x), True)

  class Fast(nn.Module):
    @nn.compact
    def __call__(self, x):
      return biggan._sn(biggan.UpConv(6, name='c'), x, True)

  v = Plain().init(jax.random.key(3), _up(x[:, :2]))
  (y_plain, s_plain), (y_fast, s_fast) = (m.apply(v, x, mutable=['spectral'])
                                          for m in (Plain(), Fast()))
  np.testing.assert_allclose(y_fast, y_plain, rtol=1e-5, atol=1e-5)
  assert jax.tree.structure(s_fast) == jax.tree.structure(s_plain)  # same u, sigma names
  for a, b in zip(jax.tree.leaves(s_fast), jax.tree.leaves(s_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_convpool_is_the_average_pool_of_the_3x3_conv():
  """ConvPool (one 4x4 stride-2 conv) against nn.avg_pool of nn.Conv(3x3, 'SAME') with the
  same kernel and bias, also under spectral norm (the same (3, 3, I, O) kernel's power
  iteration)."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 8, 4))  # non-square: edges matter
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 4, 6))
  bias = jax.random.normal(jax.random.key(2), (6,))
  variables = {'params': {'kernel': kernel, 'bias': bias}}
  pool = lambda h: nn.avg_pool(h, (2, 2), strides=(2, 2))
  y = biggan.ConvPool(6).apply(variables, x)
  assert y.shape == (2, 3, 4, 6)
  np.testing.assert_allclose(y, pool(nn.Conv(6, (3, 3)).apply(variables, x)), rtol=1e-5,
                             atol=1e-5)

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x):
      return pool(biggan._sn(nn.Conv(6, (3, 3), name='c'), x, True))

  class Fast(nn.Module):
    @nn.compact
    def __call__(self, x):
      return biggan._sn(biggan.ConvPool(6, name='c'), x, True)

  v = Plain().init(jax.random.key(3), x)
  (y_plain, s_plain), (y_fast, s_fast) = (m.apply(v, x, mutable=['spectral'])
                                          for m in (Plain(), Fast()))
  np.testing.assert_allclose(y_fast, y_plain, rtol=1e-5, atol=1e-5)
  assert jax.tree.structure(s_fast) == jax.tree.structure(s_plain)
  for a, b in zip(jax.tree.leaves(s_fast), jax.tree.leaves(s_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gblock_layers_keep_the_conv_parameter_shapes():
  """conv1 (UpConv) and the shortcut (before the upsampling) hold nn.Conv's parameters."""
  block = biggan.GBlock(8, init_scheme='dcgan')
  x, cond = jnp.ones((2, 4, 4, 6)), jnp.ones((2, 3))
  variables = block.init(jax.random.key(0), x, cond, train=False)
  p = variables['params']
  assert p['conv1']['kernel'].shape == (3, 3, 6, 8) and p['conv1']['bias'].shape == (8,)
  assert p['conv_sc']['kernel'].shape == (1, 1, 6, 8)
  assert block.apply(variables, x, cond, train=False).shape == (2, 8, 8, 8)


def test_attention_is_the_identity_at_init_and_attends_over_pooled_positions():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
  attn = biggan.Attention('dcgan')
  variables = attn.init(jax.random.key(1), x, update_stats=False)
  p = variables['params']
  assert float(p['gamma']) == 0.0
  np.testing.assert_array_equal(attn.apply(variables, x, update_stats=False), x)
  assert p['theta']['kernel'].shape == (1, 1, 16, 2) and p['g']['kernel'].shape == (1, 1, 16, 8)
  variables = jax.tree.map(lambda a: a, variables)
  variables['params']['gamma'] = jnp.ones(())
  y = attn.apply(variables, x, update_stats=False)
  assert y.shape == x.shape and float(jnp.abs(y - x).max()) > 0


def test_discriminator_blocks_and_projection_head():
  d = biggan.BigGANDiscriminator(ch=4, ch_mults=(2, 4, 4), num_down=2, num_classes=10,
                                 attn_res=8, init_scheme='dcgan')
  x, cw = jnp.ones((3, 16, 16, 1)), jax.nn.one_hot(jnp.array([0, 1, 2]), 10)
  variables = d.init(jax.random.key(0), x, cw, update_stats=False)
  p = variables['params']
  assert set(p) == {'block0', 'attn0', 'block1', 'block2', 'linear', 'embed'}
  assert 'conv_sc' not in p['block2']  # same channels, no downsampling: identity shortcut
  assert p['embed']['kernel'].shape == (10, 16)
  logits = d.apply(variables, x, cw, update_stats=False)
  assert logits.shape == (3,)
  # D's first block is a DBlock without pre-activation (checked below): its captured output
  # is that of such a block with block0's variables.
  _, inter = d.apply(variables, x, cw, update_stats=False, mutable=['intermediates'],
                     capture_intermediates=lambda m, _: m.name == 'block0')
  first = biggan.DBlock(8, preactivation=False, init_scheme='dcgan').apply(
      {'params': p['block0'], 'spectral': variables['spectral']['block0']}, x,
      update_stats=False)
  np.testing.assert_allclose(inter['intermediates']['block0']['__call__'][0], first, rtol=1e-5)


@pytest.mark.parametrize('preactivation', [True, False])
def test_dblock_is_biggan_pytorchs_block(preactivation):
  """The block against its plain form, BigGAN-PyTorch's DBlock: [ReLU ->] conv3x3 -> ReLU ->
  conv3x3 -> avgpool, plus the shortcut 1x1 conv then pool (pre-activation) or pool then
  1x1 conv; spectrally normalised convs with the same names and variables."""
  pool = lambda h: nn.avg_pool(h, (2, 2), strides=(2, 2))

  class Plain(nn.Module):
    @nn.compact
    def __call__(self, x):
      conv = lambda k, name, h: biggan._sn(nn.Conv(8, (k, k), name=name), h, False)
      h = nn.relu(x) if preactivation else x
      h = pool(conv(3, 'conv2', nn.relu(conv(3, 'conv1', h))))
      return h + (pool(conv(1, 'conv_sc', x)) if preactivation else conv(1, 'conv_sc', pool(x)))

  x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  block = biggan.DBlock(8, preactivation=preactivation, init_scheme='dcgan')
  variables = block.init(jax.random.key(1), x, update_stats=True)
  np.testing.assert_allclose(block.apply(variables, x, update_stats=False),
                             Plain().apply(variables, x), rtol=1e-5, atol=1e-5)


def test_dblock_preactivation_is_a_leading_relu():
  """With and without pre-activation the blocks agree on non-negative inputs (the
  shortcut's 1x1 conv and 2x2 average pooling commute) and differ on negative ones."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  pre = biggan.DBlock(8, preactivation=True, init_scheme='dcgan')
  raw = biggan.DBlock(8, preactivation=False, init_scheme='dcgan')
  variables = raw.init(jax.random.key(1), x, update_stats=False)
  run = lambda block, x: block.apply(variables, x, update_stats=False)
  np.testing.assert_allclose(run(pre, jnp.abs(x)), run(raw, jnp.abs(x)), rtol=1e-4, atol=1e-5)
  assert float(jnp.abs(run(pre, x) - run(raw, x)).max()) > 1e-3


def test_standing_statistics_average_the_batch_statistics():
  config = biggan_config.get_config()
  config.data.image_size = 8
  config.model.z_dim, config.model.g_ch, config.model.d_ch = 8, 4, 4
  config.model.g_ch_mults, config.model.d_ch_mults = (2,), (2, 2)
  config.model.d_num_down, config.model.shared_dim = 1, 4
  config.model.g_attn, config.model.d_attn = 0, 0
  config.model.init = 'dcgan'
  config.training.batch_size = 8
  config.gan.standing_batches = 3
  experiment = gan_experiment.GANExperiment(config, parallel.make_mesh())
  state = experiment.init_state(jax.random.key(0))
  stats = experiment.standing_stats(state)
  # Independently: G's last BatchNorm normalises block0's output (no attention); its
  # per-channel batch mean and variance over the same 3 batches of 8, averaged.
  rng = jax.random.fold_in(jax.random.fold_in(state.rng, 0), 3)
  z = experiment._latents_for_samples(jax.random.fold_in(rng, 0), 24)
  labels = np.asarray(jax.random.randint(jax.random.fold_in(rng, 1), (24,), 0, 10))
  variables = {'params': state.ema_params, **state.model_state['generator']}
  generator = experiment.generator.clone(axis_name=None)
  means, variances = [], []
  for b in range(3):
    _, inter = generator.apply(
        variables, z[8 * b:8 * b + 8], jax.nn.one_hot(labels[8 * b:8 * b + 8], 10),
        train=True, capture_intermediates=lambda m, _: m.name == 'block0',
        mutable=['intermediates', 'batch_stats', 'spectral'])
    h = np.asarray(inter['intermediates']['block0']['__call__'][0], np.float64)
    means.append(h.mean((0, 1, 2)))
    variances.append(h.var((0, 1, 2)))
  np.testing.assert_allclose(stats['bn_out']['mean'], np.mean(means, 0), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats['bn_out']['var'], np.mean(variances, 0), rtol=1e-4,
                             atol=1e-5)
  # They differ from the running averages (still at their initial 0 and 1).
  assert not np.allclose(stats['bn_out']['var'], 1.0)


def _num_params(tree):
  return sum(math.prod(a.shape) for a in jax.tree.leaves(tree))


def _attention_params(c):
  return 2 * c * (c // 8) + 2 * c * (c // 2) + 1  # theta, phi; g, o; gamma


def _closed_form_counts(ch, g_mults, d_mults, num_down, z_chunk, shared, classes, attn_after,
                        d_attn_after, channels=3):
  """BigGAN-PyTorch's layer list, counted by hand: (G, D) parameters."""
  cond = (shared + z_chunk) if shared else classes  # input of each BatchNorm projection
  g = classes * shared + z_chunk * 16 * ch * g_mults[0]  # shared embedding, linear
  g += 16 * ch * g_mults[0]  # the linear layer's bias
  for k, (i, o) in enumerate(zip((g_mults[0],) + tuple(g_mults[:-1]), g_mults)):
    i, o = ch * i, ch * o
    g += 2 * cond * (i + o) + 9 * i * o + 9 * o * o + i * o + 3 * o  # ccbn x2, convs, shortcut
    if k == attn_after:
      g += _attention_params(o)
  g += 2 * ch * g_mults[-1] + 9 * ch * g_mults[-1] * channels + channels  # output BN, conv
  d = 0
  for k, (i, o) in enumerate(zip((channels,) + tuple(ch * m for m in d_mults[:-1]),
                                 tuple(ch * m for m in d_mults))):
    d += 9 * i * o + 9 * o * o + 2 * o + ((i * o + o) if (i != o or k < num_down) else 0)
    if k == d_attn_after:
      d += _attention_params(o)
  d += ch * d_mults[-1] + 1 + classes * ch * d_mults[-1]  # linear and projection embedding
  return g, d


@pytest.mark.parametrize('config_module,num_classes,channels,closed_form', [
    # 128x128: G's input chunk 20 of z = 120; attention after G block 3 and D block 0 (64x64).
    (biggan_imagenet128, 1000, 3,
     _closed_form_counts(96, (16, 8, 4, 2, 1), (1, 2, 4, 8, 16, 16), 5, 20, 128, 1000, 3, 0)),
    # CIFAR-10: all of z (128) to the linear layer, per-class BatchNorm embeddings, no attention.
    (biggan_cifar10, 10, 3,
     _closed_form_counts(64, (4, 4, 4), (4, 4, 4, 4), 2, 128, 0, 10, -1, -1)),
    # The digits: z 96 in 3 chunks of 32, shared embedding 32, attention after G block 0 and
    # D block 0 (8x8), grey images.
    (biggan_config, 10, 1, _closed_form_counts(8, (4, 2), (2, 4, 4), 2, 32, 32, 10, 0, 0, 1)),
])
def test_configs_parameter_counts(config_module, num_classes, channels, closed_form):
  """Counted with jax.eval_shape (no weights are allocated): a CPU step of the 128x128
  model takes minutes to compile, so its training step is not run here."""
  config = config_module.get_config()
  m, size = config.model, config.data.image_size
  g = biggan.BigGANGenerator(channels=channels, ch=m.g_ch, ch_mults=m.g_ch_mults,
                             num_classes=num_classes, shared_dim=m.shared_dim,
                             hierarchical=m.hierarchical, attn_res=m.g_attn)
  d = biggan.BigGANDiscriminator(ch=m.d_ch, ch_mults=m.d_ch_mults, num_down=m.d_num_down,
                                 num_classes=num_classes, attn_res=m.d_attn)
  cw = jnp.zeros((1, num_classes))
  g_vars = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, m.z_dim)), cw,
                                         train=False))
  d_vars = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), cw,
                                         update_stats=False))
  assert (_num_params(g_vars['params']), _num_params(d_vars['params'])) == closed_form
  if config_module is biggan_config:  # the figures of docs/results/
    assert closed_form == (60_034, 36_114)
  if num_classes == 1000:  # the paper's G is about 70M parameters
    assert _num_params(g_vars['params']) == pytest.approx(70e6, rel=0.01)
  out = jax.eval_shape(lambda v: g.apply(v, jnp.zeros((2, m.z_dim)), jnp.zeros((2, num_classes)),
                                         train=False), g_vars)
  assert out.shape == (2, size, size, channels)


@pytest.mark.parametrize('config_module', [biggan_config, biggan_cifar10, biggan_imagenet128])
def test_biggan_configs_are_valid(config_module):
  config = config_module.get_config()
  gan_checks.validate(config)  # raises UserError on any inconsistency
  m = config.model
  assert config.data.image_size == 4 * 2 ** len(m.g_ch_mults)
  assert config.optim.b1 == 0.0 and config.gan.conditional
  # The paper's hinge loss; the digits config measured the non-saturating one better (docs/results/).
  assert config.gan.loss == ('non_saturating' if config_module is biggan_config else 'hinge')
