"""Closed-form checks of the noise schedules and the forward-process algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import schedules


def test_linear_schedule_matches_ho_et_al():
  s = schedules.make_schedule('linear', 1000, 1e-4, 0.02)
  betas = np.asarray(s.betas, np.float64)
  assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
  np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-3)
  np.testing.assert_allclose(s.alphas_cumprod, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)),
                             rtol=1e-4)
  # Known value from the DDPM paper's setup: abar_T ~ 4.0e-5 (x_T is almost pure noise).
  assert float(s.alphas_cumprod[-1]) == pytest.approx(4.04e-5, rel=0.02)


def test_cosine_schedule_follows_cos_squared():
  T, off = 1000, 0.008
  s = schedules.make_schedule('cosine', T)
  t = np.arange(1, T + 1)
  f = np.cos((t / T + off) / (1 + off) * np.pi / 2) ** 2 / np.cos(off / (1 + off) * np.pi / 2) ** 2
  # Away from the end, where betas are clipped at 0.999, abar_t = f(t) exactly.
  np.testing.assert_allclose(s.alphas_cumprod[:900], f[:900], rtol=2e-4, atol=1e-6)
  assert float(jnp.max(s.betas)) <= 0.999 + 1e-6


def test_schedule_builds_under_jit():
  build = jax.jit(lambda b: schedules.schedule_from_betas(b).alphas_cumprod)
  np.testing.assert_allclose(build(jnp.full((4,), 0.1)), 0.9 ** np.arange(1, 5), rtol=1e-6)


def test_q_sample_moments():
  s = schedules.make_schedule('linear', 100, 1e-4, 0.05)
  x0 = jnp.full((20000, 1), 0.7)
  for t_val in (0, 30, 99):
    t = jnp.full((20000,), t_val)
    x_t = schedules.q_sample(s, x0, t, jax.random.normal(jax.random.PRNGKey(t_val), x0.shape))
    abar = float(s.alphas_cumprod[t_val])
    assert float(jnp.mean(x_t)) == pytest.approx(np.sqrt(abar) * 0.7, abs=0.02)
    assert float(jnp.var(x_t)) == pytest.approx(1 - abar, rel=0.05, abs=1e-4)
    mean, std = schedules.q_mean_std(s, x0[:1], t[:1])
    assert float(mean[0, 0]) == pytest.approx(np.sqrt(abar) * 0.7, rel=1e-5)
    assert float(std[0, 0]) == pytest.approx(np.sqrt(1 - abar), rel=1e-5)


def test_posterior_matches_gaussian_conditioning():
  """q(x_{t-1}|x_t,x_0) by Bayes' rule on the two Gaussians, in float64 numpy."""
  s = schedules.make_schedule('linear', 50, 1e-3, 0.1)
  betas = np.asarray(s.betas, np.float64)
  abar = np.cumprod(1 - betas)
  x0, x_t = 0.3, -1.2
  for t in range(1, 50):
    prior_var = 1 - abar[t - 1]  # q(x_{t-1} | x_0)
    prior_mean = np.sqrt(abar[t - 1]) * x0
    # q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t)
    precision = 1 / prior_var + (1 - betas[t]) / betas[t]
    var = 1 / precision
    mean = var * (prior_mean / prior_var + np.sqrt(1 - betas[t]) * x_t / betas[t])
    got_mean, got_var = schedules.q_posterior(s, jnp.array([[x0]]), jnp.array([[x_t]]),
                                              jnp.array([t]))
    assert float(got_mean[0, 0]) == pytest.approx(mean, rel=1e-4, abs=1e-5)
    assert float(got_var[0, 0]) == pytest.approx(var, rel=1e-4)
  # t = 0: the posterior is the data itself.
  m0, v0 = schedules.q_posterior(s, jnp.array([[x0]]), jnp.array([[x_t]]), jnp.array([0]))
  assert float(m0[0, 0]) == pytest.approx(x0, rel=1e-4) and float(v0[0, 0]) == 0.0


@pytest.mark.parametrize('prediction', schedules.PREDICTIONS)
def test_parameterisations_invert_each_other(prediction):
  s = schedules.make_schedule('cosine', 100)
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x0 = jax.random.uniform(k1, (8, 4, 4, 1), minval=-1, maxval=1)
  eps = jax.random.normal(k2, x0.shape)
  t = jax.random.randint(k3, (8,), 0, 100)
  x_t = schedules.q_sample(s, x0, t, eps)
  target = schedules.target_for(prediction, s, x0, t, eps)
  got_x0, got_eps = schedules.x0_eps_from_output(prediction, s, x_t, t, target)
  np.testing.assert_allclose(got_x0, x0, atol=2e-3)
  np.testing.assert_allclose(got_eps, eps, atol=2e-3)


def test_v_closed_form():
  s = schedules.make_schedule('linear', 10, 0.1, 0.2)
  t = jnp.array([3])
  abar = float(s.alphas_cumprod[3])
  v = schedules.v_from_x0_eps(s, jnp.array([[2.0]]), t, jnp.array([[1.0]]))
  assert float(v[0, 0]) == pytest.approx(np.sqrt(abar) - 2 * np.sqrt(1 - abar), rel=1e-5)


def test_unknown_names_raise():
  with pytest.raises(ValueError, match='schedule'):
    schedules.make_schedule('quadratic', 10)
  with pytest.raises(ValueError, match='prediction'):
    schedules.target_for('score', None, None, None, None)
