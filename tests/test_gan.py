"""GAN family units: losses against their formulas, which player a step moves, spectral
norm, truncation, interpolation, R1, and the ring8 metrics."""

import jax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dcgan as dcgan_config
from experiments.gan import experiment as gan_experiment
from gen_jax.core import parallel
from gen_jax.data import toy_data
from gen_jax.models import dcgan
from gen_jax.objectives import gan
from gen_jax.platform import viz

REAL = np.array([-3.0, -0.5, 0.0, 0.7, 4.0], np.float32)
FAKE = np.array([-2.0, -0.1, 0.3, 1.5, 6.0], np.float32)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


@pytest.mark.parametrize('loss', ['minimax', 'non_saturating'])
def test_discriminator_loss_is_minus_the_game_value(loss):
  want = -np.mean(np.log(_sigmoid(REAL))) - np.mean(np.log(1 - _sigmoid(FAKE)))
  np.testing.assert_allclose(gan.discriminator_loss(REAL, FAKE, loss), want, rtol=1e-5)


def test_generator_losses_match_their_formulas():
  d_fake = _sigmoid(FAKE)
  # The lecture's minimax (saturating) generator loss, exactly: E[log(1 - D(G(z)))].
  np.testing.assert_allclose(gan.generator_loss(FAKE, 'minimax'), np.mean(np.log(1 - d_fake)),
                             rtol=1e-5)
  np.testing.assert_allclose(gan.generator_loss(FAKE, 'non_saturating'),
                             -np.mean(np.log(d_fake)), rtol=1e-5)
  np.testing.assert_allclose(gan.generator_loss(FAKE, 'hinge'), -np.mean(FAKE), rtol=1e-6)


def test_hinge_discriminator_loss():
  want = np.mean(np.maximum(0, 1 - REAL)) + np.mean(np.maximum(0, 1 + FAKE))
  np.testing.assert_allclose(gan.discriminator_loss(REAL, FAKE, 'hinge'), want, rtol=1e-6)


def test_saturating_loss_gives_vanishing_gradient_where_d_rejects_fakes():
  """The reason for the non-saturating default: for a confidently rejected fake
  (logit -8) d/dl log(1 - sigmoid(l)) is ~3e-4, while -log sigmoid(l) has slope ~1."""
  logit = jnp.array([-8.0])
  saturating = jax.grad(lambda l: gan.generator_loss(l, 'minimax'))(logit)
  non_saturating = jax.grad(lambda l: gan.generator_loss(l, 'non_saturating'))(logit)
  assert abs(float(saturating[0])) < 1e-3 < 0.9 < abs(float(non_saturating[0]))


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weight_norm():
  w = jnp.array([[1.0, -2.0], [0.5, 3.0]])  # logit = <w, x>, so grad_x = w for every x
  discriminate = lambda params, state, x, cw, update: (jnp.sum(x * params, (1, 2)), state)
  loss_fn = gan.make_discriminator_loss(discriminate, 'non_saturating', r1_gamma=2.0)
  batch = {'image': jnp.ones((3, 2, 2)), 'fake': jnp.zeros((3, 2, 2))}
  total, (metrics, _) = loss_fn(w, {}, batch, None)
  np.testing.assert_allclose(metrics['r1'], np.sum(np.square(w)), rtol=1e-6)
  np.testing.assert_allclose(total, metrics['d_loss'] + 0.5 * 2.0 * metrics['r1'], rtol=1e-6)


def _tiny_config(**gan_fields):
  config = dcgan_config.get_config()
  config.data.image_size = 8
  config.model.z_dim, config.model.g_ch, config.model.d_ch = 8, 8, 8
  config.training.batch_size = 8
  config.gan.cluster_classes = 0  # the default's k-means clusters only where a test asks
  for key, value in gan_fields.items():
    config.gan[key] = value
  return config


@pytest.mark.parametrize('gan_fields', [{}, {'conditional': True, 'spectral_norm': True,
                                             'r1_gamma': 1.0}])
def test_d_step_moves_only_d_and_g_step_only_g(gan_fields):
  mesh = parallel.make_mesh()
  exp = gan_experiment.GANExperiment(_tiny_config(**gan_fields), mesh)
  state = jax.jit(exp.init_state)(jax.random.PRNGKey(0))
  batch = parallel.host_local_to_global(exp.train_batches().batch(0), mesh)

  def run(step_fn):
    mapped = parallel.map_per_device(
        lambda s, b: step_fn(s, b, jax.random.PRNGKey(1), exp.hparams())[0], mesh,
        in_specs=(parallel.REPLICATED, parallel.SHARDED), out_specs=parallel.REPLICATED)
    return mapped(state, batch)

  def changed(a, b):
    return any(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.any(x != y)), a, b)))

  for step_fn, moved, fixed in ((exp.discriminator_step, 'discriminator', 'generator'),
                                (exp.generator_step, 'generator', 'discriminator')):
    new = run(step_fn)
    assert changed(state.params[moved], new.params[moved]), moved
    assert not changed(state.params[fixed], new.params[fixed]), fixed
    assert not changed(state.opt_state[fixed], new.opt_state[fixed]), fixed
    if fixed in state.model_state:
      assert not changed(state.model_state[fixed], new.model_state[fixed]), fixed


@pytest.mark.parametrize('module,x', [
    (dcgan.MLPDiscriminator(hidden=16, layers=2, spectral_norm=True), np.ones((4, 5))),
    (dcgan.DCGANDiscriminator(image_size=8, ch=4, spectral_norm=True), np.ones((4, 8, 8, 3))),
])
def test_spectral_norm_power_iteration_finds_the_largest_singular_value(module, x):
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(x), update_stats=False)
  apply = jax.jit(lambda v: module.apply(v, jnp.asarray(x), update_stats=True,
                                         mutable=[dcgan.SPECTRAL])[1])
  for _ in range(50):  # one power-iteration step per call, as in training
    variables = {**variables, **apply(variables)}
  sigmas = {path.split('/')[-3]: value for path, value in _flat(variables[dcgan.SPECTRAL])
            if path.endswith('sigma')}
  assert len(sigmas) == len(variables['params'])
  for name, sigma in sigmas.items():
    kernel = np.asarray(variables['params'][name]['kernel'])
    largest = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    # The layer uses kernel / sigma, whose largest singular value is therefore ~1.
    np.testing.assert_allclose(largest / float(sigma), 1.0, rtol=1e-3, err_msg=name)


def _flat(tree):
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [('/'.join(str(getattr(k, 'key', k)) for k in path), leaf) for path, leaf in flat]


@pytest.mark.parametrize('shape,features,use_bias', [((2, 4, 4, 16), 8, False),
                                                     ((3, 5, 7, 3), 1, True)])
def test_phase_transposed_conv_is_flax_conv_transpose(shape, features, use_bias):
  # The independent computation: flax's nn.ConvTranspose (lax.conv_transpose on the
  # dilated input), with the same parameters, in value and in both gradients.
  x = jax.random.normal(jax.random.PRNGKey(1), shape)
  flax_layer = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME',
                                use_bias=use_bias)
  ours = dcgan.ConvTranspose4x4s2(features, use_bias=use_bias)
  params = flax_layer.init(jax.random.PRNGKey(0), x)
  params = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  assert (jax.tree.map(jnp.shape, ours.init(jax.random.PRNGKey(0), x))
          == jax.tree.map(jnp.shape, params))  # checkpoints of either load in the other
  y = ours.apply(params, x)
  b, h, w, _ = shape
  assert y.shape == (b, 2 * h, 2 * w, features)
  np.testing.assert_allclose(y, flax_layer.apply(params, x), rtol=1e-5, atol=1e-4)
  cotangent = jax.random.normal(jax.random.PRNGKey(3), y.shape)
  grads = lambda layer: jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) * cotangent),
                                 argnums=(0, 1))(params, x)
  for got, want in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(flax_layer))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_truncation_keeps_every_coordinate_under_the_threshold():
  z = gan_experiment.sample_latents(jax.random.PRNGKey(0), 500, 16, truncation=0.5)
  assert z.shape == (500, 16) and np.abs(z).max() <= 0.5
  assert np.std(z) > 0.2  # still spread over the interval
  plain = gan_experiment.sample_latents(jax.random.PRNGKey(0), 500, 16)
  assert np.abs(plain).max() > 2.5
  # Per-index keys: the first samples do not depend on how many are drawn.
  np.testing.assert_array_equal(plain[:10],
                                gan_experiment.sample_latents(jax.random.PRNGKey(0), 10, 16))


def test_spherical_interpolation_keeps_the_norm():
  rng = np.random.default_rng(0)
  z0, z1 = rng.standard_normal((2, 3, 64))
  z1 *= np.linalg.norm(z0, axis=-1, keepdims=True) / np.linalg.norm(z1, axis=-1, keepdims=True)
  path = viz.interpolate(z0, z1, 9, spherical=True)  # (3, 9, 64)
  np.testing.assert_allclose(path[:, 0], z0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(path[:, -1], z1, rtol=1e-5, atol=1e-6)
  norms = np.linalg.norm(path, axis=-1)
  np.testing.assert_allclose(norms, np.repeat(norms[:, :1], 9, axis=1), rtol=1e-5)
  # A straight line cuts through the middle: its midpoint is shorter (~1/sqrt(2)).
  linear = viz.interpolate(z0, z1, 9)
  assert np.all(np.linalg.norm(linear[:, 4], axis=-1) < 0.85 * norms[:, 4])


def test_ring8_metrics_on_hand_made_points():
  modes = toy_data.ring_modes()
  rng = np.random.default_rng(0)
  everywhere = np.repeat(modes, 100, axis=0) + 0.01 * rng.standard_normal((800, 2))
  m = toy_data.ring_metrics(everywhere)
  assert m['modes_covered'] == 8 and m['high_quality_fraction'] == 1.0
  assert m['largest_mode_fraction'] == pytest.approx(1 / 8)
  collapsed = modes[3] + 0.01 * rng.standard_normal((800, 2))
  m = toy_data.ring_metrics(collapsed)
  assert m['modes_covered'] == 1 and m['high_quality_fraction'] == 1.0
  assert m['largest_mode_fraction'] == 1.0
  blurred = np.concatenate([everywhere[:400], np.zeros((400, 2))])  # half at the centre
  m = toy_data.ring_metrics(blurred)
  assert m['modes_covered'] == 4 and m['high_quality_fraction'] == 0.5
  # The data themselves: 8 modes, P(|noise| < 3 std) = 1 - exp(-9/2) = 0.989 in 2-d.
  test = toy_data.load_ring8('test')
  m = toy_data.ring_metrics(test.images)
  assert test.images.shape == (2000, 2) and m['modes_covered'] == 8
  assert m['high_quality_fraction'] == pytest.approx(0.989, abs=0.01)


def test_batch_stat_norm_matches_the_closed_form():
  """Each channel normalised by its batch mean and (biased) variance, then scaled and
  shifted; the discriminator normalises every conv but the first."""
  x = np.random.default_rng(0).normal(2.0, 3.0, (5, 4, 4, 3)).astype(np.float32)
  norm = dcgan.BatchStatNorm()
  params = {'params': {'scale': jnp.array([1.0, 2.0, 0.5]), 'bias': jnp.array([0.0, 1.0, -1.0])}}
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  expected = (x - mean) / np.sqrt(var + 1e-5) * np.array([1.0, 2.0, 0.5]) + np.array([0, 1, -1])
  np.testing.assert_allclose(norm.apply(params, x), expected, rtol=1e-4, atol=1e-4)
  d = dcgan.DCGANDiscriminator(image_size=16, ch=4, norm='batch')
  variables = d.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 16, 1)), None, update_stats=False)
  assert sorted(k for k in variables['params'] if k.startswith('norm')) == ['norm_down1']
  assert set(variables) == {'params'}  # no running statistics to carry


def test_latent_codes_are_uniform_random_and_ignore_the_labels():
  """gan.latent_classes: G's class input is a uniform code per example (keyed by the step's
  key and the example's position), whatever the labels; D stays unconditional."""
  mesh = parallel.make_mesh()
  exp = gan_experiment.GANExperiment(_tiny_config(latent_classes=4), mesh)
  params = jax.jit(exp.init_state)(jax.random.PRNGKey(0)).params
  assert params['generator']['class_embed']['kernel'].shape == (4, exp.config.model.embed_dim)
  assert 'class_embed' not in params['discriminator']
  n = 4000
  batch = {'label': jnp.zeros((n,), jnp.int32), 'index': jnp.arange(n)}
  weights = np.asarray(exp._fake_class_weights(jax.random.PRNGKey(1), batch))  # (n, 4)
  assert weights.shape == (n, 4) and np.all(weights.sum(axis=1) == 1)
  counts = weights.sum(axis=0)
  # Uniform over 4 codes: each count is Binomial(n, 1/4), std sqrt(n * 3 / 16) ~ 27.
  assert np.all(np.abs(counts - n / 4) < 5 * np.sqrt(n * 3 / 16)), counts
  other = np.asarray(exp._fake_class_weights(jax.random.PRNGKey(2), batch))
  assert 0.15 < np.mean(np.all(weights == other, axis=1)) < 0.35  # independent draws: 1/4
  # The conditional model's fakes take the real labels instead.
  cgan = gan_experiment.GANExperiment(_tiny_config(conditional=True), mesh)
  labels = jnp.arange(8) % 10
  np.testing.assert_array_equal(
      cgan._fake_class_weights(jax.random.PRNGKey(1), {'label': labels, 'index': jnp.arange(8)}),
      jax.nn.one_hot(labels, 10))


def test_latent_code_samples_cycle_through_the_codes():
  """Unconditional samples (evaluation's, with no labels) draw codes i mod K, balanced."""
  mesh = parallel.make_mesh()
  exp = gan_experiment.GANExperiment(_tiny_config(latent_classes=3), mesh)
  state = jax.jit(exp.init_state)(jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(5)
  unlabelled = exp.sample_images(state, rng, 9)
  z = exp._latents_for_samples(rng, 9)
  by_code = exp.generate(state, z, np.eye(3, dtype=np.float32)[np.arange(9) % 3])
  np.testing.assert_allclose(unlabelled, by_code, rtol=1e-6)
  code0 = exp.generate(state, z, np.eye(3, dtype=np.float32)[np.zeros(9, int)])
  assert np.abs(unlabelled[1:3] - code0[1:3]).max() > 1e-4  # the code changes the sample
  assert exp.eval_labels(9) is None  # codes are not classes: no class accuracy
  _, labels = exp.sample_balanced(state, 9, rng)
  assert np.bincount(labels).tolist() == [3, 3, 3]


def test_cluster_classes_replace_the_labels_and_sample_by_cluster_size():
  mesh = parallel.make_mesh()
  exp = gan_experiment.GANExperiment(_tiny_config(cluster_classes=5), mesh)
  ids = exp._train_data.labels
  assert exp.num_classes == 5 and exp._train_data.num_classes == 5
  assert sorted(set(ids.tolist())) == [0, 1, 2, 3, 4]
  np.testing.assert_allclose(exp.cluster_freq, np.bincount(ids) / len(ids))
  # Each image's cluster is its nearest cluster mean (no label was read).
  flat = exp._train_data.images.reshape(len(ids), -1)
  means = np.stack([flat[ids == c].mean(axis=0) for c in range(5)])
  np.testing.assert_array_equal(
      np.argmin(((flat[:, None] - means[None]) ** 2).sum(-1), axis=1), ids)
  assert exp.eval_labels(10) is None  # clusters are not the classifier's classes
  state = jax.jit(exp.init_state)(jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(5)
  unlabelled = exp.sample_images(state, rng, 6)
  drawn = np.asarray(jax.random.choice(jax.random.fold_in(rng, gan_experiment.LATENT_CODE_STREAM),
                                       5, (6,), p=jnp.asarray(exp.cluster_freq)))
  np.testing.assert_allclose(unlabelled, exp.sample_images(state, rng, 6, drawn), rtol=1e-6)


def test_random_labels_follow_the_cluster_sizes_also_for_standing_statistics():
  mesh = parallel.make_mesh()
  exp = gan_experiment.GANExperiment(
      _tiny_config(cluster_classes=5, sample_bn_stats='standing', standing_batches=2), mesh)
  assert np.ptp(exp.cluster_freq) > 0.05  # unequal clusters: the test can tell the two apart
  drawn = exp._draw_labels(jax.random.PRNGKey(0), 20000)
  np.testing.assert_allclose(np.bincount(drawn, minlength=5) / 20000, exp.cluster_freq,
                             atol=0.015)
  labelled = gan_experiment.GANExperiment(_tiny_config(conditional=True), mesh)
  drawn = labelled._draw_labels(jax.random.PRNGKey(0), 20000)
  np.testing.assert_allclose(np.bincount(drawn, minlength=10) / 20000, 0.1, atol=0.015)
  # G's standing BatchNorm statistics are of the clusters as sampled: with uniform cluster
  # frequencies instead they change.
  state = jax.jit(exp.init_state)(jax.random.PRNGKey(0))
  by_size = exp.standing_stats(state)
  exp.cluster_freq, exp._standing_cache = np.full(5, 0.2), (None,)
  uniform = exp.standing_stats(state)
  assert max(float(np.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(by_size), jax.tree.leaves(uniform))) > 1e-4
