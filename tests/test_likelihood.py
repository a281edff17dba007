"""The DDPM variational bound: decoder, KL and prior terms against independent
computations, an oracle denoiser, and the stratified estimator against the exact sum."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.diffusion import likelihood
from gen_jax.diffusion import schedules


def test_discretized_gaussian_is_a_distribution_over_256_levels():
  levels = jnp.linspace(-1.0, 1.0, 256)  # every 8-bit value
  for mean, log_scale in [(0.0, -1.0), (0.9, -4.0), (-0.3, 0.5), (1.0, -6.0)]:
    logp = likelihood.discretized_gaussian_log_likelihood(
        levels, jnp.full_like(levels, mean), jnp.full_like(levels, log_scale))
    np.testing.assert_allclose(float(jnp.sum(jnp.exp(logp))), 1.0, rtol=1e-5)


def test_discretized_gaussian_matches_scipy_bin_masses():
  rng = np.random.default_rng(0)
  levels = np.arange(256)
  x = levels / 127.5 - 1.0
  mean = rng.uniform(-1, 1, 256)
  scale = np.exp(rng.uniform(-5, 0, 256))
  lo = np.where(levels == 0, -np.inf, x - 1 / 255)
  hi = np.where(levels == 255, np.inf, x + 1 / 255)
  with np.errstate(divide='ignore'):  # bins far from the mean have mass 0 in float64
    expected = np.log(stats.norm.cdf(hi, mean, scale) - stats.norm.cdf(lo, mean, scale))
  got = likelihood.discretized_gaussian_log_likelihood(
      jnp.asarray(x, jnp.float32), jnp.asarray(mean, jnp.float32),
      jnp.asarray(np.log(scale), jnp.float32))
  ok = expected > -30  # float32 cannot hold smaller bin masses faithfully
  np.testing.assert_allclose(np.asarray(got)[ok], expected[ok], rtol=2e-3, atol=2e-4)


def test_normal_kl_matches_numerical_integration():
  m1, s1, m2, s2 = 0.3, 0.7, -0.2, 1.3
  grid = np.linspace(-12, 12, 200001)
  p = stats.norm.pdf(grid, m1, s1)
  integrand = p * (stats.norm.logpdf(grid, m1, s1) - stats.norm.logpdf(grid, m2, s2))
  expected = np.trapezoid(integrand, grid)
  got = likelihood.normal_kl(m1, 2 * math.log(s1), m2, 2 * math.log(s2))
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_quantize_rounds_to_8_bit_levels():
  x = jnp.array([-1.2, -1.0, 0.0, 1.0 / 255 + 1e-4, 0.999])
  q = likelihood.quantize(x)
  levels = (np.asarray(q) + 1) * 127.5
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
  np.testing.assert_allclose(levels, [0, 0, 128, 128, 255], atol=1e-4)


def _oracle_denoiser(schedule, x0):
  """The exact eps for data that is the single point x0."""
  def denoise(x_t, t):
    abar = schedule.alphas_cumprod[t][:, None, None, None]
    return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1 - abar)
  return denoise


def test_oracle_denoiser_leaves_only_prior_and_decoder_terms():
  schedule = schedules.make_schedule('linear', 50)
  rng = np.random.default_rng(1)
  x0 = likelihood.quantize(jnp.asarray(rng.uniform(-1, 1, (3, 4, 4, 1)), jnp.float32))
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  terms = likelihood.variational_bound(_oracle_denoiser(schedule, x0), schedule, x0, keys,
                                       num_strata=0, variance='small')
  # With x0 known, p(x_{t-1}|x_t) is the true posterior: every middle KL is 0.
  np.testing.assert_allclose(np.asarray(terms['middle']), 0.0, atol=1e-3)
  # Prior: KL(N(sqrt(abar) x0, 1 - abar) || N(0, 1)), summed over the 16 pixels.
  abar = float(schedule.alphas_cumprod[-1])
  m = np.sqrt(abar) * np.asarray(x0, np.float64).reshape(3, -1)
  var = 1 - abar
  expected_prior = (0.5 * (var + m ** 2 - 1 - np.log(var))).sum(-1)
  np.testing.assert_allclose(np.asarray(terms['prior']), expected_prior, rtol=1e-4)
  # Decoder: the mean is x0 itself, the std sqrt(beta~_1): bin mass from scipy.
  std = math.sqrt(float(schedule.posterior_variance[1]))
  xs = np.asarray(x0, np.float64).reshape(3, -1)
  lo = np.where(xs < -0.999, -np.inf, xs - 1 / 255)
  hi = np.where(xs > 0.999, np.inf, xs + 1 / 255)
  expected_decoder = -np.log(stats.norm.cdf(hi, xs, std) - stats.norm.cdf(lo, xs, std)).sum(-1)
  np.testing.assert_allclose(np.asarray(terms['decoder']), expected_decoder, rtol=1e-4)


def _shrinking_denoiser(x_t, t):
  del t
  return 0.5 * x_t  # a poor model, so every term is non-zero


def test_stratified_estimate_is_unbiased_and_exact_with_every_timestep():
  T = 20
  schedule = schedules.make_schedule('linear', T, 1e-3, 0.2)
  rng = np.random.default_rng(2)
  x0 = likelihood.quantize(jnp.asarray(rng.uniform(-1, 1, (2, 4, 4, 1)), jnp.float32))
  # The exact middle sum, term by term, averaged over the noise of x_t (many draws).
  draws = 400
  x_rep = jnp.repeat(x0, draws, axis=0)  # (2 * draws, ...)
  noise = jax.random.normal(jax.random.PRNGKey(5), x_rep.shape)
  exact = np.zeros(2)
  for t in range(1, T):
    term = likelihood.timestep_term(_shrinking_denoiser, schedule, x_rep,
                                    jnp.full((x_rep.shape[0],), t), noise)
    exact += np.asarray(term).reshape(2, draws).mean(-1)
  # The stratified estimator (K = 4 strata, and one stratum per t), averaged over many
  # keys, is within 4 standard errors of the exact sum.
  keys = jax.random.split(jax.random.PRNGKey(9), draws)
  for strata in (4, 0):
    estimate = np.asarray(jax.vmap(lambda k, s=strata: likelihood.variational_bound(
        _shrinking_denoiser, schedule, x0, jax.random.split(k, 2), num_strata=s)['middle'])(keys))
    standard_error = estimate.std(0) / np.sqrt(draws)
    assert np.all(np.abs(estimate.mean(0) - exact) < 4 * standard_error + 0.01 * exact), (
        strata, estimate.mean(0), standard_error, exact)
  # K = T - 1 visits every t once: the estimate is the sum with one noise draw each.
  starts, sizes = likelihood.stratified_timesteps(T, 0)
  np.testing.assert_array_equal(starts, np.arange(1, T))
  np.testing.assert_array_equal(sizes, np.ones(T - 1))
  starts, sizes = likelihood.stratified_timesteps(T, 4)
  assert sizes.sum() == T - 1 and starts[0] == 1


@pytest.mark.parametrize('variance', ['small', 'large'])
def test_bound_is_finite_and_positive(variance):
  schedule = schedules.make_schedule('cosine', 30)
  x0 = jnp.zeros((2, 2, 2, 3))
  terms = likelihood.variational_bound(_shrinking_denoiser, schedule, x0,
                                       jax.random.split(jax.random.PRNGKey(0), 2),
                                       num_strata=5, variance=variance)
  total = np.asarray(terms['total'])
  assert np.all(np.isfinite(total)) and np.all(total > 0)
