"""DDPM ancestral and DDIM samplers: each one `lax.scan` with the schedule precomputed.
`sample` also runs the sigma-space samplers of `sigma_samplers` (DPM-Solver++, Euler, Heun,
Euler ancestral) by name.

Both take `denoise_fn(x_t, t) -> network output` (t is (B,) int32), so conditioning,
guidance and parameters live in the caller's closure.

Randomness: `rng` is split once into (initial noise, step noise); the noise added at
timestep t is drawn from `fold_in(step_rng, t)`. With the same rng, DDIM with eta = 1
on all T steps therefore walks exactly the DDPM chain (a tested identity).
"""

from typing import Callable

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from gen_jax.diffusion import schedules
from gen_jax.diffusion import sigma_samplers

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
SPACINGS = ('uniform', 'leading', 'quad')
SAMPLERS = ('ddpm', 'ddim') + sigma_samplers.SAMPLERS


def _initial_noise_and_step_rng(rng, shape):
  rng_init, rng_steps = jax.random.split(rng)
  return jax.random.normal(rng_init, shape, jnp.float32), rng_steps


def _predict(denoise_fn, prediction, schedule, x, t_scalar, clip_x0, dynamic_threshold=0.0,
             threshold_max=0.0):
  t = jnp.full((x.shape[0],), t_scalar, jnp.int32)  # (B,)
  x0, eps = schedules.x0_eps_from_output(prediction, schedule, x, t, denoise_fn(x, t))
  if clip_x0 or dynamic_threshold > 0:
    x0 = sigma_samplers.threshold_x0(x0, clip_x0, dynamic_threshold, threshold_max)
    eps = schedules.eps_from_x0(schedule, x, t, x0)  # keep (x0, eps) consistent with x_t
  return x0, eps


def ddpm_sample(denoise_fn: DenoiseFn, schedule: schedules.Schedule, shape: tuple[int, ...],
                rng: jax.Array, prediction: str = 'eps', clip_x0: bool = True,
                variance: str = 'small', dynamic_threshold: float = 0.0,
                threshold_max: float = 0.0) -> jax.Array:
  """Ancestral sampling x_{T-1} -> ... -> x_{-1} with p(x_{t-1}|x_t) = q(x_{t-1}|x_t, x0_hat).

  Args:
    denoise_fn: the network as a function of (x_t, t).
    schedule: the noise schedule (T steps are all run).
    shape: (B, H, W, C) of the samples.
    rng: key for the initial noise and every step's noise.
    prediction: what the network predicts ('eps', 'x0', 'v').
    clip_x0: clip the predicted x0 to [-1, 1] before forming the posterior mean.
    variance: 'small' = posterior variance beta~_t, 'large' = beta_t (Ho et al. 2020).
    dynamic_threshold, threshold_max: dynamic thresholding of x0 instead of clipping
      (`sigma_samplers.threshold_x0`; 0 = off).
  Returns:
    Samples (B, H, W, C).
  """
  if variance == 'small':
    log_var = schedule.posterior_log_variance_clipped
  elif variance == 'large':
    log_var = jnp.log(jnp.concatenate([schedule.posterior_variance[1:2], schedule.betas[1:]]))
  else:
    raise ValueError(f"unknown DDPM variance {variance!r}; use 'small' or 'large'.")
  x, step_rng = _initial_noise_and_step_rng(rng, shape)

  def step(x, t):
    x0, _ = _predict(denoise_fn, prediction, schedule, x, t, clip_x0, dynamic_threshold,
                     threshold_max)
    mean = schedule.posterior_mean_coef1[t] * x0 + schedule.posterior_mean_coef2[t] * x
    noise = jax.random.normal(jax.random.fold_in(step_rng, t), x.shape, x.dtype)
    std = jnp.where(t > 0, jnp.exp(0.5 * log_var[t]), 0.0)  # no noise into x_{-1}
    return mean + std * noise, None

  timesteps = jnp.arange(schedule.num_timesteps - 1, -1, -1, dtype=jnp.int32)
  x, _ = lax.scan(step, x, timesteps)
  return x


def ddim_timesteps(num_timesteps: int, num_steps: int, spacing: str = 'uniform') -> np.ndarray:
  """The increasing subsequence tau of {0..T-1} that DDIM visits (static, numpy).

  'uniform': round(linspace(0, T-1, S)), which starts at 0 and ends at T-1;
  'leading': arange(S) * (T // S) (the DDIM paper's code and diffusers' default);
  'quad': round(linspace(0, sqrt(0.8 T), S)^2) (the DDIM paper's CIFAR-10 choice).
  """
  if not 1 <= num_steps <= num_timesteps:
    raise ValueError(f'DDIM num_steps must be in [1, {num_timesteps}], got {num_steps}.')
  if spacing == 'uniform':
    tau = np.round(np.linspace(0, num_timesteps - 1, num_steps))
  elif spacing == 'leading':
    tau = np.arange(num_steps) * (num_timesteps // num_steps)
  elif spacing == 'quad':
    tau = np.round(np.linspace(0, np.sqrt(num_timesteps * 0.8), num_steps) ** 2)
  else:
    raise ValueError(f'unknown DDIM spacing {spacing!r}; use one of {SPACINGS}.')
  tau = np.unique(tau.astype(np.int32))
  if len(tau) != num_steps:
    raise ValueError(f'{spacing!r} spacing repeats timesteps for {num_steps} of '
                     f'{num_timesteps} steps; use fewer steps or another spacing.')
  return tau


def ddim_step(x, x0, eps, abar, abar_prev, eta, noise):
  """One DDIM update x_t -> x_{prev} (Song et al. 2021, eq. 12).

  sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev);
  x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z.
  """
  del x  # x enters through (x0, eps).
  sigma = eta * jnp.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
  direction = jnp.sqrt(jnp.maximum(1.0 - abar_prev - sigma ** 2, 0.0)) * eps
  return jnp.sqrt(abar_prev) * x0 + direction + sigma * noise


def ddim_sample(denoise_fn: DenoiseFn, schedule: schedules.Schedule, shape: tuple[int, ...],
                rng: jax.Array, num_steps: int = 50, eta: float = 0.0,
                spacing: str = 'uniform', prediction: str = 'eps',
                clip_x0: bool = True, dynamic_threshold: float = 0.0,
                threshold_max: float = 0.0) -> jax.Array:
  """DDIM sampling on `num_steps` timesteps; eta = 0 is deterministic given x_T.

  Args:
    denoise_fn, schedule, shape, rng, prediction, clip_x0, dynamic_threshold,
      threshold_max: as in `ddpm_sample`.
    num_steps: S, the number of network evaluations.
    eta: 0 (deterministic DDIM) .. 1 (DDPM-like posterior variance).
    spacing: how tau is chosen, see `ddim_timesteps`.
  Returns:
    Samples (B, H, W, C).
  """
  tau = ddim_timesteps(schedule.num_timesteps, num_steps, spacing)
  tau_prev = np.concatenate([[-1], tau[:-1]])  # -1: the data, abar = 1
  abar = schedule.alphas_cumprod
  abar_t = abar[tau]  # (S,)
  abar_prev = jnp.where(tau_prev >= 0, abar[np.maximum(tau_prev, 0)], 1.0)  # (S,)
  x, step_rng = _initial_noise_and_step_rng(rng, shape)

  def step(x, i):
    t = jnp.asarray(tau)[i]
    x0, eps = _predict(denoise_fn, prediction, schedule, x, t, clip_x0, dynamic_threshold,
                       threshold_max)
    noise = jax.random.normal(jax.random.fold_in(step_rng, t), x.shape, x.dtype)
    return ddim_step(x, x0, eps, abar_t[i], abar_prev[i], eta, noise), None

  x, _ = lax.scan(step, x, jnp.arange(len(tau) - 1, -1, -1))
  return x


def num_evaluations(sampling_config, num_timesteps: int) -> int:
  """Network evaluations (NFE) of the config's sampler: T for DDPM, S for DDIM (a guided
  evaluation is one call on the doubled batch)."""
  s = sampling_config
  if s.sampler == 'ddpm':
    return num_timesteps
  if s.sampler == 'ddim':
    return s.num_steps
  return sigma_samplers.nfe(s.sampler, s.num_steps)


def sample(denoise_fn: DenoiseFn, schedule: schedules.Schedule, shape, rng, sampling_config,
           prediction: str) -> jax.Array:
  """Runs the sampler named in the config's `sampling` block."""
  s = sampling_config
  if s.sampler == 'ddpm':
    return ddpm_sample(denoise_fn, schedule, shape, rng, prediction=prediction,
                       clip_x0=s.clip_x0, variance=s.ddpm_variance,
                       dynamic_threshold=s.dynamic_threshold,
                       threshold_max=s.threshold_max)
  if s.sampler == 'ddim':
    return ddim_sample(denoise_fn, schedule, shape, rng, num_steps=s.num_steps,
                       eta=s.eta, spacing=s.spacing, prediction=prediction,
                       clip_x0=s.clip_x0, dynamic_threshold=s.dynamic_threshold,
                       threshold_max=s.threshold_max)
  if s.sampler in sigma_samplers.SAMPLERS:
    # .get: configs saved before these fields sample with their defaults.
    return sigma_samplers.sample(
        denoise_fn, schedule.alphas_cumprod, shape, rng, s.sampler, s.num_steps, prediction,
        sigma_schedule=s.sigma_schedule, rho=s.rho,
        sigma_min=s.sigma_min, sigma_max=s.sigma_max,
        s_churn=s.s_churn, s_tmin=s.s_tmin,
        s_tmax=s.s_tmax, s_noise=s.s_noise,
        clip_x0=s.clip_x0, dynamic_threshold=s.dynamic_threshold,
        threshold_max=s.threshold_max)
  raise ValueError(f'unknown sampler {s.sampler!r}; use one of {SAMPLERS}.')
