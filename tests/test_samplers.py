"""DDPM and DDIM samplers against closed forms and independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules


def linear_eps(x, t):
  """A stub network: eps_hat = 0.3 x + 0.01 t (smooth, t-dependent, cheap)."""
  return 0.3 * x + 0.01 * t.astype(x.dtype)[:, None, None, None]


def test_ddim_eta0_matches_independent_numpy_loop():
  sched = schedules.make_schedule('linear', 100, 1e-4, 0.05)
  rng = jax.random.PRNGKey(3)
  got = samplers.ddim_sample(linear_eps, sched, (4, 2, 2, 1), rng, num_steps=10, eta=0.0,
                             spacing='leading', clip_x0=False)
  # The same initial noise the sampler draws, then eq. 12 of Song et al. with sigma = 0.
  x = np.asarray(jax.random.normal(jax.random.split(rng)[0], (4, 2, 2, 1)), np.float64)
  abar = np.cumprod(1 - np.asarray(sched.betas, np.float64))
  taus = list(range(0, 100, 10))
  for i in reversed(range(len(taus))):
    t = taus[i]
    a, a_prev = abar[t], (abar[taus[i - 1]] if i > 0 else 1.0)
    eps = 0.3 * x + 0.01 * t
    x0 = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
    x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
  np.testing.assert_allclose(got, x, rtol=2e-3, atol=2e-3)


def test_ddim_eta0_is_deterministic_and_ignores_step_noise():
  sched = schedules.make_schedule('cosine', 50)
  rng = jax.random.PRNGKey(0)
  a = samplers.ddim_sample(linear_eps, sched, (3, 4, 4, 1), rng, num_steps=7, eta=0.0)
  b = samplers.ddim_sample(linear_eps, sched, (3, 4, 4, 1), rng, num_steps=7, eta=0.0)
  np.testing.assert_array_equal(a, b)
  # eta = 0 adds no step noise; eta = 1 does, from the same key.
  c = samplers.ddim_sample(linear_eps, sched, (3, 4, 4, 1), rng, num_steps=7, eta=1.0)
  assert not np.allclose(a, c)


def test_ddim_eta1_on_all_steps_is_the_ddpm_chain():
  sched = schedules.make_schedule('linear', 40, 1e-3, 0.1)
  rng = jax.random.PRNGKey(7)
  for clip in (False, True):
    ddpm = samplers.ddpm_sample(linear_eps, sched, (5, 3, 3, 2), rng, clip_x0=clip,
                                variance='small')
    ddim = samplers.ddim_sample(linear_eps, sched, (5, 3, 3, 2), rng, num_steps=40, eta=1.0,
                                spacing='uniform', clip_x0=clip)
    np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)


def test_ddim_step_with_eta1_has_posterior_moments():
  sched = schedules.make_schedule('linear', 30, 1e-3, 0.1)
  t = 12
  x0, x_t = jnp.array([[0.4]]), jnp.array([[-0.5]])
  eps = schedules.eps_from_x0(sched, x_t, jnp.array([t]), x0)
  abar, abar_prev = sched.alphas_cumprod[t], sched.alphas_cumprod[t - 1]
  mean = samplers.ddim_step(x_t, x0, eps, abar, abar_prev, 1.0, jnp.zeros_like(x_t))
  unit = samplers.ddim_step(x_t, x0, eps, abar, abar_prev, 1.0, jnp.ones_like(x_t)) - mean
  post_mean, post_var = schedules.q_posterior(sched, x0, x_t, jnp.array([t]))
  np.testing.assert_allclose(mean, post_mean, rtol=1e-4)
  np.testing.assert_allclose(unit ** 2, post_var, rtol=1e-3)


@pytest.mark.parametrize('sampler', ['ddpm', 'ddim'])
def test_exact_score_samples_gaussian_data(sampler):
  """Data x0 ~ N(0, s^2): the optimal eps is known in closed form,
  eps*(x_t, t) = sqrt(1 - abar) x_t / (abar s^2 + 1 - abar), so samples must have std s."""
  s = 0.5
  sched = schedules.make_schedule('linear', 200, 1e-4, 0.05)

  def oracle(x, t):
    abar = sched.alphas_cumprod[t][:, None, None, None]
    return jnp.sqrt(1 - abar) * x / (abar * s ** 2 + 1 - abar)

  shape = (4000, 1, 1, 1)
  if sampler == 'ddpm':
    x = samplers.ddpm_sample(oracle, sched, shape, jax.random.PRNGKey(1), clip_x0=False)
  else:
    x = samplers.ddim_sample(oracle, sched, shape, jax.random.PRNGKey(1), num_steps=50,
                             eta=0.0, clip_x0=False)
  assert float(jnp.std(x)) == pytest.approx(s, rel=0.05)
  assert abs(float(jnp.mean(x))) < 0.05


@pytest.mark.parametrize('prediction', ['x0', 'v'])
def test_other_parameterisations_sample_the_same_chain(prediction):
  """A network that predicts x0 or v consistently with linear_eps gives the eps chain."""
  sched = schedules.make_schedule('linear', 30, 1e-3, 0.1)

  def as_prediction(x, t):
    eps = linear_eps(x, t)
    x0 = schedules.x0_from_eps(sched, x, t, eps)
    return x0 if prediction == 'x0' else schedules.v_from_x0_eps(sched, x0, t, eps)

  rng = jax.random.PRNGKey(5)
  want = samplers.ddim_sample(linear_eps, sched, (2, 2, 2, 1), rng, num_steps=10, clip_x0=False)
  got = samplers.ddim_sample(as_prediction, sched, (2, 2, 2, 1), rng, num_steps=10,
                             prediction=prediction, clip_x0=False)
  np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_timestep_spacings():
  np.testing.assert_array_equal(samplers.ddim_timesteps(1000, 5, 'leading'),
                                [0, 200, 400, 600, 800])
  uniform = samplers.ddim_timesteps(1000, 50, 'uniform')
  assert uniform[0] == 0 and uniform[-1] == 999 and len(uniform) == 50
  quad = samplers.ddim_timesteps(1000, 10, 'quad')
  assert np.all(np.diff(quad) > 0) and np.diff(quad)[0] < np.diff(quad)[-1]
  with pytest.raises(ValueError, match='num_steps'):
    samplers.ddim_timesteps(10, 11)


@pytest.mark.parametrize('sampler', ['ddpm', 'ddim'])
def test_samplers_trace_the_network_once(sampler):
  """One lax.scan: the network is traced once however many steps run."""
  sched = schedules.make_schedule('linear', 25, 1e-3, 0.1)
  traces = []

  def counting_eps(x, t):
    traces.append(1)
    return linear_eps(x, t)

  if sampler == 'ddpm':
    fn = jax.jit(lambda r: samplers.ddpm_sample(counting_eps, sched, (2, 4, 4, 3), r))
  else:
    fn = jax.jit(lambda r: samplers.ddim_sample(counting_eps, sched, (2, 4, 4, 3), r, 10))
  assert fn(jax.random.PRNGKey(0)).shape == (2, 4, 4, 3)
  assert len(traces) == 1
