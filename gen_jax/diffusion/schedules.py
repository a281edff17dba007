"""Noise schedules and the Gaussian algebra of the forward process, as pure functions.

Timestep convention (as in Ho et al.'s code): t = 0, ..., T-1 index `betas`; the
paper's t = 1..T is our t = 0..T-1. x_t is the data after t+1 noising steps:

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s).

`abar_prev[t]` is abar_{t-1}, with abar_prev[0] = 1 (x_{-1} is the data itself), so
the posterior q(x_{t-1} | x_t, x_0) at t = 0 has zero variance and mean x_0.

Precision: betas and every derived coefficient are computed in float64 with numpy on the
host, as Ho et al.'s and improved-diffusion's code do, and only then cast to float32. In
float32, 1 - abar_t loses most of its digits where abar_t is near 1 (t = 0: 1 - 0.9999),
so the cosine betas came out up to 2.3e-3 relative off and posterior_mean_coef1[0] was
0.999834 instead of 1 (the last DDPM step returned (1 - 1.7e-4) x0). Built from concrete
betas, a `Schedule` therefore holds float32 roundings of the float64 values; built from
traced betas (under jit) it falls back to the same formulas in the betas' dtype.

Everything is a jnp array in a `Schedule` pytree, so it can be passed into jitted code.
"""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

PREDICTIONS = ('eps', 'x0', 'v')
SCHEDULES = ('linear', 'cosine')
SCHEDULES += ('scaled_linear',)  # diffusers' beta_schedule of that name (imported checkpoints)


def linear_betas(num_timesteps: int, beta_start: float = 1e-4,
                 beta_end: float = 0.02) -> np.ndarray:
  """Ho et al. 2020: betas linear from beta_start to beta_end. Returns (T,) float64."""
  return np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)


def cosine_alpha_bar(t: np.ndarray, s: float = 0.008) -> np.ndarray:
  """Nichol & Dhariwal 2021's f(t) = cos^2(((t + s) / (1 + s)) pi/2) for t in [0, 1], float64.

  abar_t = f(t) / f(0); only ratios of f enter the betas, so f(0) cancels there.
  """
  return np.cos((np.asarray(t, np.float64) + s) / (1 + s) * np.pi / 2) ** 2


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Nichol & Dhariwal 2021: beta_i = min(1 - f((i+1)/T) / f(i/T), max_beta). Returns (T,) float64.

  As improved-diffusion's `betas_for_alpha_bar`; the clip keeps the last betas below 1
  (f reaches 0 at t = 1).
  """
  f = cosine_alpha_bar(np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps, s)
  return np.minimum(1.0 - f[1:] / f[:-1], max_beta)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 0.00085,
                        beta_end: float = 0.012) -> np.ndarray:
  """diffusers' 'scaled_linear': sqrt(beta) linear from sqrt(start) to sqrt(end). (T,) float64."""
  return np.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps, dtype=np.float64) ** 2


@flax.struct.dataclass
class Schedule:
  """Per-timestep coefficients, each (T,) float32 (from float64 host values)."""
  betas: jax.Array
  alphas_cumprod: jax.Array  # abar_t
  alphas_cumprod_prev: jax.Array  # abar_{t-1}, 1 at t = 0
  posterior_variance: jax.Array  # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
  posterior_log_variance_clipped: jax.Array  # log beta~_t, with t = 0 set to t = 1's value
  posterior_mean_coef1: jax.Array  # multiplies x_0; exactly 1 at t = 0
  posterior_mean_coef2: jax.Array  # multiplies x_t; 0 at t = 0
  sqrt_alphas_cumprod: jax.Array  # sqrt(abar_t)
  sqrt_one_minus_alphas_cumprod: jax.Array  # sqrt(1 - abar_t)
  log_one_minus_alphas_cumprod: jax.Array  # log(1 - abar_t)
  sqrt_recip_alphas_cumprod: jax.Array  # 1 / sqrt(abar_t)
  sqrt_recipm1_alphas_cumprod: jax.Array  # sqrt(1 / abar_t - 1)

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]


def make_schedule(kind: str = 'linear', num_timesteps: int = 1000,
                  beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
  """Builds the schedule `kind` ('linear' or 'cosine') with T = num_timesteps."""
  if kind == 'linear':
    betas = linear_betas(num_timesteps, beta_start, beta_end)
  elif kind == 'cosine':
    betas = cosine_betas(num_timesteps)
  elif kind == 'scaled_linear':
    betas = scaled_linear_betas(num_timesteps, beta_start, beta_end)
  else:
    raise ValueError(f'unknown schedule {kind!r}; use one of {SCHEDULES}.')
  return schedule_from_betas(betas)


def _coefficients(betas, xp) -> dict:
  """Every `Schedule` field from betas (T,), with the array module `xp` (numpy or jnp)."""
  alphas = 1.0 - betas
  abar = xp.cumprod(alphas)
  abar_prev = xp.concatenate([xp.ones((1,), abar.dtype), abar[:-1]])
  one_minus_abar = 1.0 - abar
  post_var = betas * (1.0 - abar_prev) / one_minus_abar
  return dict(
      betas=betas,
      alphas_cumprod=abar,
      alphas_cumprod_prev=abar_prev,
      posterior_variance=post_var,
      # beta~_0 = 0: its log is clipped to beta~_1's (Ho et al.'s code).
      posterior_log_variance_clipped=xp.log(xp.concatenate([post_var[1:2], post_var[1:]])),
      posterior_mean_coef1=betas * xp.sqrt(abar_prev) / one_minus_abar,
      posterior_mean_coef2=(1.0 - abar_prev) * xp.sqrt(alphas) / one_minus_abar,
      sqrt_alphas_cumprod=xp.sqrt(abar),
      sqrt_one_minus_alphas_cumprod=xp.sqrt(one_minus_abar),
      log_one_minus_alphas_cumprod=xp.log(one_minus_abar),
      sqrt_recip_alphas_cumprod=xp.sqrt(1.0 / abar),
      sqrt_recipm1_alphas_cumprod=xp.sqrt(1.0 / abar - 1.0),
  )


def schedule_from_betas(betas) -> Schedule:
  """All coefficients of the forward process and its posterior from betas (T,).

  Concrete betas (numpy or jax arrays, any float dtype) are taken to float64 and every
  coefficient is computed there with numpy, then cast to float32. Traced betas (inside
  jit) use the same formulas in jnp, in their own dtype.
  """
  if isinstance(betas, jax.core.Tracer):
    return Schedule(**_coefficients(betas, jnp))
  betas = np.asarray(jax.device_get(betas), np.float64)
  if betas.ndim != 1 or not np.all((betas > 0) & (betas < 1)):
    raise ValueError(f'betas must be a (T,) array in (0, 1), got shape {betas.shape}, '
                     f'range [{betas.min(initial=np.inf)}, {betas.max(initial=-np.inf)}].')
  coefficients = _coefficients(betas, np)
  return Schedule(**{k: jnp.asarray(v, jnp.float32) for k, v in coefficients.items()})


def _at(coef: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
  """coef[t] for a batch t (B,), broadcast against x (B, ...)."""
  return coef[t].reshape(t.shape + (1,) * (x.ndim - t.ndim))


def q_mean_std(schedule: Schedule, x0: jax.Array, t: jax.Array):
  """Mean and std of q(x_t | x_0)."""
  return (_at(schedule.sqrt_alphas_cumprod, t, x0) * x0,
          _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * jnp.ones_like(x0))


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.  x0, noise: (B, ...), t: (B,)."""
  return (_at(schedule.sqrt_alphas_cumprod, t, x0) * x0 +
          _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise)


def q_posterior(schedule: Schedule, x0: jax.Array, x_t: jax.Array, t: jax.Array):
  """Mean and variance of q(x_{t-1} | x_t, x_0)."""
  mean = (_at(schedule.posterior_mean_coef1, t, x_t) * x0 +
          _at(schedule.posterior_mean_coef2, t, x_t) * x_t)
  return mean, _at(schedule.posterior_variance, t, x_t)


def x0_from_eps(schedule, x_t, t, eps):
  """x0 = x_t / sqrt(abar) - sqrt(1 / abar - 1) eps (Ho et al.'s predict_start_from_noise)."""
  return (_at(schedule.sqrt_recip_alphas_cumprod, t, x_t) * x_t -
          _at(schedule.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)


def eps_from_x0(schedule, x_t, t, x0):
  """eps = (x_t / sqrt(abar) - x0) / sqrt(1 / abar - 1)."""
  return ((_at(schedule.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x0) /
          _at(schedule.sqrt_recipm1_alphas_cumprod, t, x_t))


def v_from_x0_eps(schedule, x0, t, eps):
  """v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)."""
  return (_at(schedule.sqrt_alphas_cumprod, t, x0) * eps -
          _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0)


def x0_from_v(schedule, x_t, t, v):
  """x0 = sqrt(abar) x_t - sqrt(1 - abar) v."""
  return (_at(schedule.sqrt_alphas_cumprod, t, x_t) * x_t -
          _at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * v)


def target_for(prediction: str, schedule, x0, t, eps) -> jax.Array:
  """The regression target of the network for `prediction` in ('eps', 'x0', 'v')."""
  if prediction == 'eps':
    return eps
  if prediction == 'x0':
    return x0
  if prediction == 'v':
    return v_from_x0_eps(schedule, x0, t, eps)
  raise ValueError(f'unknown prediction {prediction!r}; use one of {PREDICTIONS}.')


def x0_eps_from_output(prediction: str, schedule, x_t, t, output):
  """Turns the network output into (x0, eps) for any parameterisation."""
  if prediction == 'eps':
    return x0_from_eps(schedule, x_t, t, output), output
  if prediction == 'x0':
    return output, eps_from_x0(schedule, x_t, t, output)
  if prediction == 'v':
    eps = (_at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t +
           _at(schedule.sqrt_alphas_cumprod, t, x_t) * output)
    return x0_from_v(schedule, x_t, t, output), eps
  raise ValueError(f'unknown prediction {prediction!r}; use one of {PREDICTIONS}.')
