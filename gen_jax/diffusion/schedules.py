"""Noise schedules and the Gaussian algebra of the forward process, as pure functions.

Timestep convention (as in Ho et al.'s code): t = 0, ..., T-1 index `betas`; the
paper's t = 1..T is our t = 0..T-1. x_t is the data after t+1 noising steps:

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s).

`abar_prev[t]` is abar_{t-1}, with abar_prev[0] = 1 (x_{-1} is the data itself), so
the posterior q(x_{t-1} | x_t, x_0) at t = 0 has zero variance and mean x_0.

Everything is a jnp array in a `Schedule` pytree, so it can be built and used under jit.
"""

import flax.struct
import jax
import jax.numpy as jnp

PREDICTIONS = ('eps', 'x0', 'v')
SCHEDULES = ('linear', 'cosine')
SCHEDULES += ('scaled_linear',)  # diffusers' beta_schedule of that name (imported checkpoints)


def linear_betas(num_timesteps: int, beta_start: float = 1e-4,
                 beta_end: float = 0.02) -> jax.Array:
  """Ho et al. 2020: betas linear from beta_start to beta_end. Returns (T,)."""
  return jnp.linspace(beta_start, beta_end, num_timesteps, dtype=jnp.float32)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> jax.Array:
  """Nichol & Dhariwal 2021: abar(t) = cos^2(((t/T + s)/(1 + s)) pi/2). Returns (T,)."""
  steps = jnp.arange(num_timesteps + 1, dtype=jnp.float32) / num_timesteps
  f = jnp.cos((steps + s) / (1 + s) * jnp.pi / 2) ** 2
  abar = f / f[0]
  return jnp.clip(1.0 - abar[1:] / abar[:-1], 0.0, max_beta)


def scaled_linear_betas(num_timesteps: int, beta_start: float = 0.00085,
                        beta_end: float = 0.012) -> jax.Array:
  """diffusers' 'scaled_linear': sqrt(beta) linear from sqrt(start) to sqrt(end). (T,)."""
  return jnp.linspace(beta_start ** 0.5, beta_end ** 0.5, num_timesteps,
                      dtype=jnp.float32) ** 2


@flax.struct.dataclass
class Schedule:
  """Per-timestep coefficients, each (T,)."""
  betas: jax.Array
  alphas_cumprod: jax.Array  # abar_t
  alphas_cumprod_prev: jax.Array  # abar_{t-1}, 1 at t = 0
  posterior_variance: jax.Array  # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
  posterior_log_variance_clipped: jax.Array  # log beta~_t, with t = 0 set to t = 1's value
  posterior_mean_coef1: jax.Array  # multiplies x_0
  posterior_mean_coef2: jax.Array  # multiplies x_t

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


def schedule_from_betas(betas: jax.Array) -> Schedule:
  """All coefficients of the forward process and its posterior from betas (T,)."""
  alphas = 1.0 - betas
  abar = jnp.cumprod(alphas)
  abar_prev = jnp.concatenate([jnp.ones((1,), abar.dtype), abar[:-1]])
  post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
  post_logvar = jnp.log(jnp.concatenate([post_var[1:2], post_var[1:]]))
  return Schedule(
      betas=betas,
      alphas_cumprod=abar,
      alphas_cumprod_prev=abar_prev,
      posterior_variance=post_var,
      posterior_log_variance_clipped=post_logvar,
      posterior_mean_coef1=betas * jnp.sqrt(abar_prev) / (1.0 - abar),
      posterior_mean_coef2=(1.0 - abar_prev) * jnp.sqrt(alphas) / (1.0 - abar),
  )


def _at(coef: jax.Array, t: jax.Array, x: jax.Array) -> jax.Array:
  """coef[t] for a batch t (B,), broadcast against x (B, ...)."""
  return coef[t].reshape(t.shape + (1,) * (x.ndim - t.ndim))


def q_mean_std(schedule: Schedule, x0: jax.Array, t: jax.Array):
  """Mean and std of q(x_t | x_0)."""
  abar = _at(schedule.alphas_cumprod, t, x0)
  return jnp.sqrt(abar) * x0, jnp.sqrt(1.0 - abar) * jnp.ones_like(x0)


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.  x0, noise: (B, ...), t: (B,)."""
  abar = _at(schedule.alphas_cumprod, t, x0)
  return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise


def q_posterior(schedule: Schedule, x0: jax.Array, x_t: jax.Array, t: jax.Array):
  """Mean and variance of q(x_{t-1} | x_t, x_0)."""
  mean = (_at(schedule.posterior_mean_coef1, t, x_t) * x0 +
          _at(schedule.posterior_mean_coef2, t, x_t) * x_t)
  return mean, _at(schedule.posterior_variance, t, x_t)


def x0_from_eps(schedule, x_t, t, eps):
  abar = _at(schedule.alphas_cumprod, t, x_t)
  return (x_t - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)


def eps_from_x0(schedule, x_t, t, x0):
  abar = _at(schedule.alphas_cumprod, t, x_t)
  return (x_t - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)


def v_from_x0_eps(schedule, x0, t, eps):
  """v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)."""
  abar = _at(schedule.alphas_cumprod, t, x0)
  return jnp.sqrt(abar) * eps - jnp.sqrt(1.0 - abar) * x0


def x0_from_v(schedule, x_t, t, v):
  abar = _at(schedule.alphas_cumprod, t, x_t)
  return jnp.sqrt(abar) * x_t - jnp.sqrt(1.0 - abar) * v


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
    abar = _at(schedule.alphas_cumprod, t, x_t)
    eps = jnp.sqrt(1.0 - abar) * x_t + jnp.sqrt(abar) * output
    return x0_from_v(schedule, x_t, t, output), eps
  raise ValueError(f'unknown prediction {prediction!r}; use one of {PREDICTIONS}.')
