"""The VAE family: closed forms and bounds of the objectives, model shapes, the manifold
grid, bad configs, end-to-end runs on digits and tfds mock MNIST, and 8 devices == 1."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from gen_jax.core import parallel
from gen_jax.models.vae import VAE
from gen_jax.objectives import vae as objectives
from gen_jax.platform import viz
from tests.conftest import assert_one_line_error, read_jsonl, run_launch

# A VAE small enough that a launch.py run takes seconds on one core.
TINY_VAE = [
    '--config=configs/vae.py',
    '--config.data.image_size=8',
    '--config.eval.image_size=0',  # scored at 8px by the tests' 8px classifier
    '--config.model.features=(8,)',
    '--config.model.hidden=16',
    '--config.training.batch_size=16',
    '--config.training.log_every=1',
    '--config.training.sample_every=0',
    '--config.training.eval_every=0',
    '--config.optim.warmup_steps=2',
    '--config.vae.iwae_samples=4',
    '--config.eval.held_out_examples=24',
    '--config.eval.batch_size=16',
    '--config.sampling.num_samples=8',
    '--config.sampling.num_recon=8',
    '--config.sampling.manifold_size=4',
    '--config.training.async_checkpoints=False',
]


# --- objectives ----------------------------------------------------------------------
def test_kl_closed_form_matches_monte_carlo():
  mu = jnp.array([[0.5, -1.0, 0.0], [2.0, 0.3, -0.7]])  # (B, k)
  logvar = jnp.array([[0.0, -1.0, 0.5], [-2.0, 1.0, 0.2]])
  eps = jax.random.normal(jax.random.PRNGKey(0), (200_000,) + mu.shape)
  z = objectives.reparameterize(mu, logvar, eps)  # (S, B, k)
  log_ratio = jax.vmap(lambda zs: objectives.log_normal(zs, mu, logvar)
                       - objectives.log_standard_normal(zs))(z)  # (S, B)
  np.testing.assert_allclose(objectives.kl_standard_normal(mu, logvar),
                             jnp.mean(log_ratio, axis=0), rtol=0.02, atol=0.01)


@pytest.mark.parametrize('shape', [(4, 2), (4, 2, 2, 3)])
def test_kl_is_zero_at_the_prior(shape):
  zeros = jnp.zeros(shape)
  np.testing.assert_array_equal(objectives.kl_standard_normal(zeros, zeros), np.zeros(4))
  assert np.all(objectives.kl_standard_normal(zeros + 0.1, zeros) > 0)


def test_reparameterized_gradient_matches_the_analytic_gradient():
  """d/d(mu, logvar) E_{z ~ N(mu, sigma^2)}[exp(a z)] = a v, (a^2 sigma^2 / 2) v,
  with v = exp(a mu + a^2 sigma^2 / 2)."""
  a = jnp.array([0.5, -1.0, 0.8])
  mu, logvar = jnp.array([0.3, -0.2, 1.0]), jnp.array([-0.5, 0.2, -1.5])
  eps = jax.random.normal(jax.random.PRNGKey(1), (400_000, 3))

  def monte_carlo(mu, logvar):
    z = objectives.reparameterize(mu, logvar, eps)  # (S, 3)
    return jnp.sum(jnp.mean(jnp.exp(a * z), axis=0))

  grad_mu, grad_logvar = jax.grad(monte_carlo, argnums=(0, 1))(mu, logvar)
  var = jnp.exp(logvar)
  value = jnp.exp(a * mu + a ** 2 * var / 2)
  np.testing.assert_allclose(grad_mu, a * value, rtol=0.01)
  np.testing.assert_allclose(grad_logvar, a ** 2 * var / 2 * value, rtol=0.02)


def test_likelihoods_are_log_probabilities():
  x = jnp.array([[[0.2, 0.9]], [[0.0, 1.0]]])  # (B, 1, 2) targets in [0, 1]
  mean = jnp.array([[[0.1, 0.5]], [[0.4, 0.6]]])
  np.testing.assert_allclose(
      objectives.gaussian_log_likelihood(x, mean, 0.3),
      jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, math.sqrt(0.3)), axis=(1, 2)), rtol=1e-6)
  logits = jnp.array([[[0.0, 2.0]], [[-1.0, 3.0]]])
  binary = jnp.array([[[0.0, 1.0]], [[1.0, 1.0]]])
  p = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(objectives.bernoulli_log_likelihood(binary, logits),
                             jnp.sum(jnp.log(jnp.where(binary > 0, p, 1 - p)), axis=(1, 2)),
                             rtol=1e-6)
  # Images in [-1, 1] are used on the [0, 1] scale.
  fn = objectives.make_log_likelihood('bernoulli')
  np.testing.assert_allclose(fn(2 * binary - 1, logits),
                             objectives.bernoulli_log_likelihood(binary, logits))


# z ~ N(0, 1), x | z ~ N(w z, eta I), so log p(x) is known; q(z|x) is a deliberately
# wrong Gaussian, so the ELBO is loose and the IWAE bound tightens with K.
_W, _ETA = np.array([1.5, -0.5, 1.0], np.float32), 0.4


def _toy_encode(params, x):  # (B, D) -> mu, logvar (B, 1)
  del params
  return 0.2 * x[:, :1], jnp.full((x.shape[0], 1), -0.5)


def _toy_decode(params, z):  # (B, 1) -> (B, D)
  del params
  return z * _W


def _toy_log_likelihood(x, mean):
  return objectives.gaussian_log_likelihood(x, mean, _ETA)


def _linear_gaussian_bounds(num_samples: int, seed: int):
  """Mean ELBO, IWAE_K bound and exact log p(x) of the toy model over 256 points."""
  w, eta = jnp.asarray(_W), _ETA
  x = jax.random.normal(jax.random.PRNGKey(7), (256, 3)) * 1.3  # (B, D)
  encode, decode, log_lik = _toy_encode, _toy_decode, _toy_log_likelihood
  keys = jax.random.split(jax.random.PRNGKey(seed), x.shape[0])
  log_w, elbo, _ = jax.jit(objectives.importance_log_weights, static_argnums=(0, 1, 2, 6))(
      encode, decode, log_lik, None, x, keys, num_samples)
  cov = eta * jnp.eye(3) + jnp.outer(w, w)
  exact = jax.scipy.stats.multivariate_normal.logpdf(x, jnp.zeros(3), cov)
  return float(jnp.mean(elbo)), float(jnp.mean(objectives.iwae_bound(log_w))), float(
      jnp.mean(exact))


def test_elbo_below_iwae_which_grows_with_k_towards_log_px():
  ks = (1, 4, 32, 256)
  results = [np.mean([_linear_gaussian_bounds(k, seed) for seed in range(3)], axis=0)
             for k in ks]
  elbo, exact = results[0][0], results[0][2]
  iwae = [r[1] for r in results]
  assert elbo < exact - 0.5  # the posterior is wrong on purpose
  assert abs(iwae[0] - elbo) < 0.1  # IWAE_1 is the ELBO, in expectation
  for k, small, large in zip(ks[1:], iwae, iwae[1:]):
    assert large >= small - 0.02, (k, iwae)
    assert large <= exact + 0.02, (k, iwae, exact)
  assert elbo < iwae[-1] and exact - iwae[-1] < 0.3 * (exact - elbo)


# --- model and figures ---------------------------------------------------------------
@pytest.mark.parametrize('latent_shape', [(5,), (4, 4, 3)])
def test_encoder_decoder_shapes(latent_shape):
  model = VAE(features=(8, 16), latent_shape=latent_shape, image_shape=(16, 16, 1), hidden=32)
  x = jnp.zeros((2, 16, 16, 1))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  mu, logvar = jax.eval_shape(lambda p, x: model.apply(p, x, method=VAE.encode), params, x)
  assert mu.shape == logvar.shape == (2,) + latent_shape
  decoded = jax.eval_shape(lambda p, z: model.apply(p, z, method=VAE.decode), params, mu)
  assert decoded.shape == (2, 16, 16, 1)


def test_gaussian_latent_grid():
  z = viz.gaussian_latent_grid(5, margin=0.05)
  assert z.shape == (25, 2)
  np.testing.assert_allclose(z[0], [-1.6448536, 1.6448536], rtol=1e-5)  # top left
  np.testing.assert_allclose(z[-1], [1.6448536, -1.6448536], rtol=1e-5)  # bottom right
  assert np.all(np.diff(z[:5, 0]) > 0) and np.all(z[:5, 1] == z[0, 1])  # along a row


def test_decoded_manifold_has_the_grid_shape():
  from configs import vae as vae_config
  from experiments.vae.experiment import VAEExperiment
  config = vae_config.get_config()
  config.data.image_size, config.model.features, config.model.hidden = 8, (8,), 16
  config.vae.latent_shape = (2,)  # the manifold of a 2-d latent (the default is 16-d)
  experiment = VAEExperiment(config, parallel.make_mesh())
  state = jax.jit(experiment.init_state)(jax.random.PRNGKey(0))
  images = experiment.manifold(state.params, 6)
  assert images.shape == (36, 8, 8, 1)
  assert images.min() >= -1 and images.max() <= 1
  assert viz.image_grid(images, 6).shape == (6 * 9 + 1, 6 * 9 + 1, 1)


# --- launch.py -----------------------------------------------------------------------
@pytest.mark.parametrize('override,needle', [
    ('--config.vae.likelihood=poisson', 'vae.likelihood'),
    ('--config.vae.obs_variance=0', 'vae.obs_variance'),
    ('--config.vae.obs_variance=-1.0', 'vae.obs_variance'),
    ('--config.vae.latent_shape=(3,3,2)', 'vae.latent_shape'),
])
def test_bad_config_is_a_one_line_error(tmp_path, override, needle):
  proc = run_launch([*TINY_VAE, f'--workdir={tmp_path}', override], check=False)
  assert_one_line_error(proc, needle)


def test_digits_train_evaluate_then_sample(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = run_launch([*TINY_VAE, f'--workdir={workdir}', '--config.training.num_steps=4',
                     '--config.training.eval_every=2', '--config.training.sample_every=4',
                     '--config.vae.latent_shape=(2,)'])  # 2-d: the manifold figure too
  assert 'eval at step 4' in proc.stdout
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  train = [m for m in metrics if 'train/loss' in m]
  assert [m['step'] for m in train] == [1, 2, 3, 4]
  for m in train:
    assert m['train/elbo'] < 0 and m['train/kl'] >= 0 and m['train/recon'] > 0
    np.testing.assert_allclose(m['train/elbo'], -m['train/recon'] - m['train/kl'], rtol=1e-5)
  evals = [m for m in metrics if 'eval/elbo' in m]
  assert [m['step'] for m in evals] == [2, 4]
  for m in evals:
    assert m['eval/elbo'] < 0 < m['eval/iwae_nll'] <= -m['eval/elbo'] + 1e-3
    np.testing.assert_allclose(m['eval/iwae_bits_per_dim'],
                               m['eval/iwae_nll'] / (64 * math.log(2)), rtol=1e-6)
  samples = os.path.join(workdir, 'samples')
  assert sorted(os.listdir(samples)) == [
      'latents_train_step0000004.png', 'manifold_train_step0000004.png',
      'prior_train_step0000004.npz', 'prior_train_step0000004.png',
      'recon_train_step0000004.png']
  # Recon: 8 inputs above their 8 reconstructions; manifold: 4 x 4 tiles of 8 + 1 pixels.
  width, height = Image.open(os.path.join(samples, 'recon_train_step0000004.png')).size
  assert width % (8 * 9 + 1) == 0 and height % (2 * 9 + 1) == 0
  assert width // (8 * 9 + 1) == height // (2 * 9 + 1)  # one upscaling factor
  width, height = Image.open(os.path.join(samples, 'manifold_train_step0000004.png')).size
  assert width == height and width % (4 * 9 + 1) == 0
  # --mode=sample: the same figures from the latest checkpoint, prior samples as .npz.
  proc = run_launch([*TINY_VAE, f'--workdir={workdir}', '--mode=sample',
                     '--config.vae.latent_shape=(2,)'])
  assert 'eval/iwae_nll' in proc.stdout
  images = np.load(os.path.join(samples, 'prior_sample_step0000004.npz'))['images']
  assert images.shape == (8, 8, 8, 1) and images.min() >= -1 and images.max() <= 1
  for kind in ('recon', 'prior', 'manifold', 'latents'):
    assert os.path.exists(os.path.join(samples, f'{kind}_sample_step0000004.png')), kind


def test_gaussian_spatial_latent_trains(tmp_path):
  workdir = str(tmp_path / 'run')
  run_launch([*TINY_VAE, f'--workdir={workdir}', '--config.training.num_steps=2',
              '--config.vae.likelihood=gaussian', '--config.vae.obs_variance=0.05',
              '--config.vae.latent_shape=(4,4,2)', '--config.vae.beta=0.5',
              '--config.training.eval_every=2', '--config.training.sample_every=2'])
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert np.isfinite(metrics[-1]['eval/iwae_nll'])
  samples = sorted(os.listdir(os.path.join(workdir, 'samples')))
  assert samples == ['prior_train_step0000002.npz', 'prior_train_step0000002.png',
                     'recon_train_step0000002.png']  # no manifold for a spatial latent


def test_eight_devices_match_one_device(tmp_path):
  runs = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f'd{devices}')
    run_launch([*TINY_VAE, f'--workdir={workdir}', '--config.training.num_steps=3',
                '--config.training.eval_every=3'], devices=devices)
    metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
    runs[devices] = ({m['step']: m['train/loss'] for m in metrics if 'train/loss' in m},
                     metrics[-1])
  (one, eval_one), (eight, eval_eight) = runs[1], runs[8]
  assert sorted(one) == [1, 2, 3]
  np.testing.assert_allclose([eight[s] for s in one], list(one.values()), rtol=2e-5)
  for key in ('eval/elbo', 'eval/iwae_nll'):
    np.testing.assert_allclose(eval_eight[key], eval_one[key], rtol=2e-5)


def test_tfds_mock_mnist_smoke(tmp_path):
  """configs/vae_mnist.py through tensorflow-datasets, with tfds.testing.mock_data."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from configs import vae_mnist
  from experiments import programs
  config = vae_mnist.get_config()
  config.data.image_size = 8
  config.model.features, config.model.hidden = (8,), 16
  config.training.batch_size = 8
  config.training.num_steps = 2
  config.training.log_every = 1
  config.training.sample_every = 2
  config.training.eval_every = 2
  config.vae.iwae_samples = 3
  config.eval.batch_size = 16
  config.sampling.num_samples = 8
  config.sampling.num_recon = 8
  workdir = str(tmp_path / 'mnist')
  with tfds.testing.mock_data(num_examples=32):
    assert programs.run(config, workdir) == 'done'
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in metrics if 'train/loss' in m] == [1, 2]
  assert metrics[-1]['eval/iwae_nll'] > 0  # Bernoulli: a probability, so -log p > 0
  samples = np.load(os.path.join(workdir, 'samples', 'prior_train_step0000002.npz'))
  assert samples['images'].shape == (8, 8, 8, 1)
