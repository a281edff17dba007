"""Closed-form checks of the noise schedules and the forward-process algebra."""

import math

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
    abar = np.cumprod(1 - np.linspace(1e-4, 0.05, 100))[t_val]  # float64
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


# --- float64 construction: every coefficient against its float64 closed form ---
def _closed_forms(betas):
  """Each Schedule field from betas, element by element in Python floats (float64)."""
  abar, prev, out = 1.0, 1.0, {k: [] for k in (
      'alphas_cumprod', 'alphas_cumprod_prev', 'posterior_variance', 'posterior_mean_coef1',
      'posterior_mean_coef2', 'sqrt_alphas_cumprod', 'sqrt_one_minus_alphas_cumprod',
      'log_one_minus_alphas_cumprod', 'sqrt_recip_alphas_cumprod',
      'sqrt_recipm1_alphas_cumprod')}
  for beta in betas:
    prev, abar = abar, abar * (1.0 - beta)
    out['alphas_cumprod'].append(abar)
    out['alphas_cumprod_prev'].append(prev)
    out['posterior_variance'].append(beta * (1.0 - prev) / (1.0 - abar))
    out['posterior_mean_coef1'].append(beta * math.sqrt(prev) / (1.0 - abar))
    out['posterior_mean_coef2'].append((1.0 - prev) * math.sqrt(1.0 - beta) / (1.0 - abar))
    out['sqrt_alphas_cumprod'].append(math.sqrt(abar))
    out['sqrt_one_minus_alphas_cumprod'].append(math.sqrt(1.0 - abar))
    out['log_one_minus_alphas_cumprod'].append(math.log(1.0 - abar))
    out['sqrt_recip_alphas_cumprod'].append(1.0 / math.sqrt(abar))
    out['sqrt_recipm1_alphas_cumprod'].append(math.sqrt(1.0 / abar - 1.0))
  var = out['posterior_variance']
  out['posterior_log_variance_clipped'] = [math.log(v) for v in [var[1]] + var[1:]]
  return {k: np.array(v) for k, v in out.items()}


def _cosine_betas_closed_form(T, s=0.008, max_beta=0.999):
  """Nichol & Dhariwal 2021, eq. 17 with the 0.999 clip, in Python floats."""
  f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
  return [min(1.0 - f(i + 1) / f(i), max_beta) for i in range(T)]


# float32 rounding of a float64 value is within 2^-24 = 6e-8 relative.
_F32_RTOL = 1e-7


@pytest.mark.parametrize('kind', ['linear', 'cosine'])
def test_every_coefficient_is_its_float64_value_rounded_to_float32(kind):
  T = 1000
  s = schedules.make_schedule(kind, T)
  betas = (_cosine_betas_closed_form(T) if kind == 'cosine'
           else [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)])
  np.testing.assert_allclose(np.asarray(s.betas, np.float64), betas, rtol=_F32_RTOL, atol=0)
  for name, want in _closed_forms(betas).items():
    got = getattr(s, name)
    assert got.dtype == jnp.float32, name
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=_F32_RTOL, atol=0,
                               err_msg=name)


def test_cosine_betas_match_the_closed_form_in_float64():
  T = 1000
  betas = schedules.cosine_betas(T)
  assert betas.dtype == np.float64
  np.testing.assert_allclose(betas, _cosine_betas_closed_form(T), rtol=1e-12, atol=0)
  assert betas.max() == 0.999 and (betas == 0.999).sum() >= 1  # the clip at the end
  # abar_t = f(t+1) / f(0) where no beta is clipped.
  f = schedules.cosine_alpha_bar(np.arange(T + 1) / T)
  abar = np.cumprod(1 - betas)
  unclipped = np.flatnonzero(betas < 0.999)[:-1]
  np.testing.assert_allclose(abar[unclipped], f[unclipped + 1] / f[0], rtol=1e-12)


@pytest.mark.parametrize('kind', ['linear', 'cosine'])
def test_last_ddpm_step_returns_x0_exactly(kind):
  """posterior_mean_coef1[0] = beta_0 / (1 - abar_0) = 1 and coef2[0] = 0 exactly, as in
  Ho et al.'s float64 code (float32 construction gave 0.999834 for the linear schedule)."""
  s = schedules.make_schedule(kind, 1000)
  assert float(s.posterior_mean_coef1[0]) == 1.0
  assert float(s.posterior_mean_coef2[0]) == 0.0
  x0 = jnp.array([[0.123456789, -0.987654321]])
  mean, var = schedules.q_posterior(s, x0, jnp.array([[5.0, -7.0]]), jnp.array([0]))
  np.testing.assert_array_equal(mean, x0)
  assert float(var[0, 0]) == 0.0


def test_bad_betas_are_refused():
  for betas in (np.array([0.1, 1.0]), np.array([0.0, 0.1]), np.zeros((2, 2)) + 0.1):
    with pytest.raises(ValueError, match='betas'):
      schedules.schedule_from_betas(betas)
