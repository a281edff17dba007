"""The DDPM variational bound on -log p(x_0) in bits/dim (Ho et al. 2020, Sec. 3.3).

    -log p(x_0) <= L_T + sum_{t=1}^{T-1} L_t + L_0    (t = 0..T-1 index the betas)
    L_T = KL(q(x_{T-1} | x_0) || N(0, I))                      prior term
    L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))        x_t ~ q(x_t | x_0)
    L_0 = -log p(x_0 | x_0's noisy version at t = 0)           discretized Gaussian decoder

Data are 8-bit images on [-1, 1]: x_0 is first quantized to the 256 levels (as a saved
PNG would be), and the decoder gives each level the Gaussian mass of its bin of width
2/255 (the edge bins extend to +-inf), so the bound is on a real discrete likelihood.
p(x_{t-1} | x_t) is the sampler's: mean from the network's (optionally clipped) x_0
prediction, variance 'small' (posterior beta~_t) or 'large' (beta_t).

The T - 1 middle terms are estimated by stratified sampling: K strata of {1..T-1}, one
uniform timestep per stratum, weighted by the stratum's size. The estimate is unbiased,
and exact when K = T - 1. All functions are pure and return nats per example.
"""

from typing import Callable

import jax
from jax import lax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from gen_jax.diffusion import schedules

# denoise_fn(x_t (B, H, W, C), t (B,)) -> the network output for `prediction`.
DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
_BIN = 1.0 / 255.0  # half the width of a bin on [-1, 1]


def quantize(x: jax.Array) -> jax.Array:
  """[-1, 1] values -> the nearest of the 256 levels of an 8-bit image, on [-1, 1]."""
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0


def normal_kl(mean1, logvar1, mean2, logvar2) -> jax.Array:
  """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), nats."""
  return 0.5 * (logvar2 - logvar1 + jnp.exp(logvar1 - logvar2)
                + (mean1 - mean2) ** 2 * jnp.exp(-logvar2) - 1.0)


def discretized_gaussian_log_likelihood(x: jax.Array, mean: jax.Array,
                                        log_scale: jax.Array) -> jax.Array:
  """Elementwise log P(x) of an 8-bit level x on [-1, 1] under N(mean, exp(log_scale)^2)
  integrated over x's bin [x - 1/255, x + 1/255] (to -inf / +inf at the ends)."""
  inv_scale = jnp.exp(-log_scale)
  upper = (x - mean + _BIN) * inv_scale
  lower = (x - mean - _BIN) * inv_scale
  log_cdf_upper = jsp.log_ndtr(upper)  # log P(z <= upper)
  log_survival_lower = jsp.log_ndtr(-lower)  # log P(z > lower)
  # log(Phi(upper) - Phi(lower)), computed on the side of the mean that keeps precision.
  mid = jnp.where(lower > 0,
                  log_survival_lower + jnp.log1p(-jnp.exp(jsp.log_ndtr(-upper)
                                                          - log_survival_lower)),
                  log_cdf_upper + jnp.log1p(-jnp.exp(jsp.log_ndtr(lower) - log_cdf_upper)))
  return jnp.where(x < -0.999, log_cdf_upper, jnp.where(x > 0.999, log_survival_lower, mid))


def _sum_per_example(x: jax.Array) -> jax.Array:
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def model_log_variance(schedule: schedules.Schedule, variance: str) -> jax.Array:
  """log Var of p(x_{t-1} | x_t) per t: 'small' (beta~_t) or 'large' (beta_t), as the
  DDPM sampler uses them (t = 0 takes t = 1's beta~ in both)."""
  if variance == 'small':
    return schedule.posterior_log_variance_clipped
  if variance == 'large':
    return jnp.log(jnp.concatenate([schedule.posterior_variance[1:2], schedule.betas[1:]]))
  raise ValueError(f"unknown DDPM variance {variance!r}; use 'small' or 'large'.")


def prior_term(schedule: schedules.Schedule, x0: jax.Array) -> jax.Array:
  """L_T = KL(q(x_{T-1} | x_0) || N(0, I)) per example (B,), nats."""
  t = jnp.full((x0.shape[0],), schedule.num_timesteps - 1, jnp.int32)
  mean, std = schedules.q_mean_std(schedule, x0, t)
  return _sum_per_example(normal_kl(mean, 2.0 * jnp.log(std), 0.0, 0.0))


def timestep_term(denoise_fn: DenoiseFn, schedule: schedules.Schedule, x0: jax.Array,
                  t: jax.Array, noise: jax.Array, prediction: str = 'eps',
                  clip_x0: bool = True, variance: str = 'small') -> jax.Array:
  """L_t per example (B,), nats: the KL term for t >= 1, the decoder NLL L_0 for t = 0.

  Args:
    denoise_fn: the network as a function of (x_t, t).
    schedule: the noise schedule.
    x0: (B, H, W, C) quantized data on [-1, 1].
    t: (B,) int timesteps.
    noise: (B, H, W, C) standard normal draws for x_t = q_sample(x0, t, noise).
    prediction, clip_x0, variance: the sampler's settings.
  """
  x_t = schedules.q_sample(schedule, x0, t, noise)
  x0_hat, _ = schedules.x0_eps_from_output(prediction, schedule, x_t, t, denoise_fn(x_t, t))
  if clip_x0:
    x0_hat = jnp.clip(x0_hat, -1.0, 1.0)
  model_mean, _ = schedules.q_posterior(schedule, x0_hat, x_t, t)
  model_logvar = model_log_variance(schedule, variance)[t].reshape(t.shape + (1,) * (x0.ndim - 1))
  true_mean, true_var = schedules.q_posterior(schedule, x0, x_t, t)
  kl = _sum_per_example(normal_kl(true_mean, jnp.log(jnp.maximum(true_var, 1e-20)),
                                  model_mean, model_logvar))
  decoder_nll = -_sum_per_example(
      discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar))
  return jnp.where(t == 0, decoder_nll, kl)


def stratified_timesteps(num_timesteps: int, num_strata: int) -> tuple[np.ndarray, np.ndarray]:
  """Stratum starts and sizes (K,) covering {1..T-1}; K = 0 or >= T - 1 means one per t."""
  middle = num_timesteps - 1
  k = middle if num_strata <= 0 else min(num_strata, middle)
  edges = np.linspace(1, num_timesteps, k + 1).round().astype(np.int32)
  return edges[:-1], np.diff(edges)


def variational_bound(denoise_fn: DenoiseFn, schedule: schedules.Schedule, x0: jax.Array,
                      rng_per_example: jax.Array, num_strata: int = 0,
                      prediction: str = 'eps', clip_x0: bool = True,
                      variance: str = 'small') -> dict[str, jax.Array]:
  """The bound's terms per example (B,), nats.

  Args:
    denoise_fn: the network as a function of (x_t, t).
    schedule: the noise schedule.
    x0: (B, H, W, C) data on [-1, 1] (quantized here to 8 bits).
    rng_per_example: (B, 2) one key per example (keyed by its dataset position, so the
      estimate does not depend on batching).
    num_strata: K strata of the middle terms (0: all T - 1, exact).
    prediction, clip_x0, variance: the sampler's settings.
  Returns:
    {'total', 'prior' (L_T), 'decoder' (L_0), 'middle' (estimate of sum_{t>=1} L_t)}.
  """
  x0 = quantize(x0)
  starts, sizes = stratified_timesteps(schedule.num_timesteps, num_strata)
  def one_stratum(total, k):
    keys = jax.vmap(lambda key: jax.random.split(jax.random.fold_in(key, k)))(rng_per_example)
    offset = jax.vmap(lambda key: jax.random.randint(key, (), 0, sizes_j[k]))(keys[:, 0])
    noise = jax.vmap(lambda key: jax.random.normal(key, x0.shape[1:]))(keys[:, 1])
    t = starts_j[k] + offset  # (B,): uniform in stratum k
    term = timestep_term(denoise_fn, schedule, x0, t, noise, prediction, clip_x0, variance)
    return total + sizes_j[k] * term, None

  starts_j, sizes_j = jnp.asarray(starts), jnp.asarray(sizes)
  # zeros_like(x0 ...) rather than zeros((B,)): under shard_map the carry must have
  # x0's per-device (varying) type.
  middle, _ = lax.scan(one_stratum, jnp.zeros_like(x0[:, 0, 0, 0], jnp.float32),
                       jnp.arange(len(starts), dtype=jnp.int32))
  zero_t = jnp.zeros((x0.shape[0],), jnp.int32)
  decoder_noise = jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, len(starts)),
                                                         x0.shape[1:]))(rng_per_example)
  decoder = timestep_term(denoise_fn, schedule, x0, zero_t, decoder_noise, prediction,
                          clip_x0, variance)
  prior = prior_term(schedule, x0)
  return {'total': prior + middle + decoder, 'prior': prior, 'decoder': decoder,
          'middle': middle}
