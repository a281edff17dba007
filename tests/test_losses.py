"""The denoising loss against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import losses
from gen_jax.diffusion import schedules

SCHED = schedules.make_schedule('linear', 100, 1e-4, 0.05)


def batch_of(x0):
  return {'image': x0, 'index': jnp.arange(x0.shape[0], dtype=jnp.int32)}


def zero_model(params, x_t, t, batch, rng):
  return jnp.zeros_like(x_t)


def test_x0_loss_of_a_zero_network_is_the_data_power():
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (16, 4, 4, 1), minval=-1, maxval=1)
  loss, metrics = losses.make_diffusion_loss(zero_model, SCHED, 'x0')(None, batch_of(x0),
                                                                      jax.random.PRNGKey(1))
  assert float(loss) == pytest.approx(float(jnp.mean(x0 ** 2)), rel=1e-6)
  counts = sum(float(metrics[f'loss_q{q}_count']) for q in range(4))
  assert counts == 16
  total = sum(float(metrics[f'loss_q{q}_sum']) for q in range(4))
  assert total / 16 == pytest.approx(float(loss), rel=1e-5)


def test_eps_loss_of_a_zero_network_is_one_on_average():
  x0 = jnp.zeros((256, 8, 8, 1))
  loss, _ = losses.make_diffusion_loss(zero_model, SCHED, 'eps')(None, batch_of(x0),
                                                                 jax.random.PRNGKey(1))
  assert float(loss) == pytest.approx(1.0, abs=0.02)


def test_v_loss_of_a_zero_network_matches_its_expectation():
  """E||v||^2 = abar + (1 - abar) x0^2 per pixel, averaged over the drawn t."""
  x0 = jnp.full((4096, 1, 1, 1), 0.5)
  loss, _ = losses.make_diffusion_loss(zero_model, SCHED, 'v')(None, batch_of(x0),
                                                               jax.random.PRNGKey(2))
  abar = np.asarray(SCHED.alphas_cumprod)
  expected = np.mean(abar + (1 - abar) * 0.25)
  assert float(loss) == pytest.approx(expected, rel=0.03)


def test_an_oracle_eps_network_has_zero_loss():
  """Recover eps exactly from x_t when x0 is known to the 'network'."""
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (8, 4, 4, 1), minval=-1, maxval=1)

  def oracle(params, x_t, t, batch, rng):
    return schedules.eps_from_x0(SCHED, x_t, t, batch['image'])

  loss, _ = losses.make_diffusion_loss(oracle, SCHED, 'eps')(None, batch_of(x0),
                                                             jax.random.PRNGKey(3))
  assert float(loss) < 1e-8


def test_draws_depend_on_the_example_index_not_the_batch_split():
  x0 = jax.random.uniform(jax.random.PRNGKey(0), (8, 4, 4, 1), minval=-1, maxval=1)
  fn = losses.make_diffusion_loss(zero_model, SCHED, 'eps')
  rng = jax.random.PRNGKey(4)
  whole, _ = fn(None, batch_of(x0), rng)
  first, _ = fn(None, {'image': x0[:4], 'index': jnp.arange(4)}, rng)
  second, _ = fn(None, {'image': x0[4:], 'index': jnp.arange(4, 8)}, rng)
  assert float(whole) == pytest.approx((float(first) + float(second)) / 2, rel=1e-6)


def test_finalize_quarter_metrics():
  out = losses.finalize_quarter_metrics({'loss': 1.0, 'loss_q0_sum': 3.0, 'loss_q0_count': 2.0,
                                         'loss_q1_sum': 0.0, 'loss_q1_count': 0.0})
  assert out == {'loss': 1.0, 'loss_q0': 1.5}
