"""Sigma-space samplers: DPM-Solver++ (Lu et al. 2022) and the EDM samplers (Karras et al.
2022), each one `lax.scan`, for the discrete-time models of this package.

A model trained on t = 0..T-1 with abar_t is a denoiser on noise levels

    sigma_t = sqrt((1 - abar_t) / abar_t),    x_t = sqrt(abar_t) (x_0 + sigma_t eps),

so x / sqrt(abar) = x_0 + sigma eps is the variance-exploding ("VE") sample of EDM and
k-diffusion, and x_t = x_ve / sqrt(1 + sigma^2) is what the network sees. A noise level
between two trained ones maps to a fractional timestep by interpolating log sigma
(`sigma_to_t`, as diffusers and k-diffusion do); the U-Net's sinusoidal embedding takes
fractional t. eps, x0 and v networks all work.

Conventions (diffusers' schedulers, which the tests reproduce step for step from
committed fixtures; where k-diffusion differs it is said here and in docs/samplers.md):
  * the last noise level is 0, so every sampler returns its final x0 prediction;
  * 'model' sigmas: DPM-Solver++ visits the integer timesteps
    round(linspace(0, T-1, S+1))[::-1][:-1] (diffusers' DPMSolverMultistepScheduler);
    Euler, Heun and Euler ancestral visit the fractional timesteps linspace(T-1, 0, S) with
    sigma interpolated linearly in t (diffusers' Euler/Heun schedulers; k-diffusion
    interpolates log sigma there);
  * 'karras' sigmas: (sigma_max^(1/rho) + i/(S-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,
    i = 0..S-1, with the schedule's own extremes unless given, then the timesteps of those
    sigmas (rounded to integers for DPM-Solver++, as diffusers does for non-cosine betas);
  * DPM-Solver++(2M) takes first-order steps first and last (the last goes to sigma = 0);
  * EDM's churn (s_churn, s_tmin, s_tmax, s_noise) follows EDM/k-diffusion: the network is
    evaluated at the churned sample and its raised noise level sigma_hat (diffusers'
    EulerDiscreteScheduler evaluates it before the churn).

Every network call is one "evaluation" of the scan; the number of evaluations (NFE) is
`nfe(sampler, num_steps)`: S for DPM-Solver++ and (ancestral) Euler, 2S - 1 for Heun
(no correction on the last step, whose end point sigma = 0 has no derivative).

Randomness: as `samplers.py`, `rng` splits into (initial noise, step noise), and the noise
of evaluation k comes from `fold_in(step_rng, k)`; tests inject it instead (`noise`).
"""

import dataclasses
from typing import Callable

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
SAMPLERS = ('dpmpp_2m', 'dpmpp_1', 'dpmpp_2m_sde', 'euler', 'heun', 'euler_ancestral')
SIGMA_SCHEDULES = ('model', 'karras')
_DPMPP = ('dpmpp_2m', 'dpmpp_1', 'dpmpp_2m_sde')


def nfe(sampler: str, num_steps: int) -> int:
  """Network evaluations of `sampler` with `num_steps` solver steps."""
  if sampler not in SAMPLERS:
    raise ValueError(f'unknown sampler {sampler!r}; use one of {SAMPLERS}.')
  return 2 * num_steps - 1 if sampler == 'heun' else num_steps


# --- noise levels -----------------------------------------------------------------------
def model_sigmas(alphas_cumprod) -> np.ndarray:
  """sigma_t = sqrt((1 - abar_t) / abar_t) for t = 0..T-1, increasing. Returns (T,) f64."""
  abar = np.asarray(alphas_cumprod, np.float64)
  return np.sqrt((1.0 - abar) / abar)


def sigma_to_t(sigma, log_sigmas: np.ndarray) -> np.ndarray:
  """Fractional timesteps of noise levels `sigma`, interpolating log sigma between the
  trained timesteps (clamped to [0, T-1]).

  Args:
    sigma: noise levels (any shape).
    log_sigmas: (T,) log of `model_sigmas`, increasing in t.
  Returns:
    Timesteps, the shape of sigma (float64).
  """
  log_sigma = np.log(np.maximum(np.asarray(sigma, np.float64), 1e-10))
  return np.interp(log_sigma, log_sigmas, np.arange(len(log_sigmas), dtype=np.float64))


def karras_sigmas(sigma_min: float, sigma_max: float, num_steps: int,
                  rho: float = 7.0) -> np.ndarray:
  """EDM's noise levels (Karras et al. 2022, eq. 5), sigma_max down to sigma_min. (S,)."""
  ramp = np.linspace(0.0, 1.0, num_steps)
  lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
  return (hi + ramp * (lo - hi)) ** rho


@dataclasses.dataclass(frozen=True)
class SigmaSteps:
  """The static (numpy) noise levels a sampler visits.

  Attributes:
    sigmas: (S + 1,) decreasing VE noise levels, the last one 0.
    timesteps: (S,) the network's timestep at sigmas[:-1] (fractional where interpolated).
    log_sigmas: (T,) log sigma of the trained timesteps (to place churned noise levels).
  """
  sigmas: np.ndarray
  timesteps: np.ndarray
  log_sigmas: np.ndarray

  @property
  def num_steps(self) -> int:
    return len(self.timesteps)


def sigma_steps(alphas_cumprod, sampler: str, num_steps: int, sigma_schedule: str = 'model',
                rho: float = 7.0, sigma_min: float = 0.0,
                sigma_max: float = 0.0) -> SigmaSteps:
  """The noise levels and timesteps `sampler` visits in `num_steps` steps.

  Args:
    alphas_cumprod: (T,) abar_t of the trained schedule (concrete, not traced).
    sampler: one of SAMPLERS (DPM-Solver++ and the Euler family place 'model' steps
      differently, see the module docstring).
    num_steps: S, solver steps.
    sigma_schedule: 'model' (the trained timesteps) or 'karras'.
    rho: the Karras schedule's exponent (7 in EDM).
    sigma_min, sigma_max: the Karras schedule's extremes; 0 takes the schedule's own.
  Returns:
    The SigmaSteps.
  """
  if sampler not in SAMPLERS:
    raise ValueError(f'unknown sampler {sampler!r}; use one of {SAMPLERS}.')
  if sigma_schedule not in SIGMA_SCHEDULES:
    raise ValueError(f'unknown sigma schedule {sigma_schedule!r}; use one of '
                     f'{SIGMA_SCHEDULES}.')
  sig = model_sigmas(alphas_cumprod)  # (T,)
  num_timesteps = len(sig)
  if not 1 <= num_steps <= num_timesteps:
    raise ValueError(f'num_steps must be in [1, {num_timesteps}], got {num_steps}.')
  log_sigmas = np.log(sig)
  if sampler in _DPMPP:
    timesteps = np.round(np.linspace(0, num_timesteps - 1, num_steps + 1))[::-1][:-1]
    sigmas = sig[timesteps.astype(np.int64)]
  else:
    timesteps = np.linspace(0, num_timesteps - 1, num_steps)[::-1]
    sigmas = np.interp(timesteps, np.arange(num_timesteps), sig)
  if sigma_schedule == 'karras':
    lo = sigma_min if sigma_min > 0 else (sig[0] if sampler in _DPMPP else sigmas[-1])
    hi = sigma_max if sigma_max > 0 else (sig[-1] if sampler in _DPMPP else sigmas[0])
    sigmas = karras_sigmas(lo, hi, num_steps, rho)
    timesteps = sigma_to_t(sigmas, log_sigmas)
    if sampler in _DPMPP:
      timesteps = np.round(timesteps)
  return SigmaSteps(sigmas=np.concatenate([sigmas, [0.0]]),
                    timesteps=np.asarray(timesteps, np.float64), log_sigmas=log_sigmas)


# --- x0 predictions -----------------------------------------------------------------------
def threshold_x0(x0: jax.Array, clip: bool, dynamic_ratio: float = 0.0,
                 max_value: float = 0.0) -> jax.Array:
  """Clips a predicted x0 (B, ...) to the data range, or dynamically thresholds it.

  Dynamic thresholding (Saharia et al. 2022): s = the `dynamic_ratio` quantile of |x0| per
  sample, clamped to [1, max_value] (max_value 0: no upper bound); x0 -> clip(x0, -s, s) / s.

  Args:
    x0: (B, ...) predicted data.
    clip: clip to [-1, 1] (ignored when dynamic_ratio > 0, which also lands in [-1, 1]).
    dynamic_ratio: the quantile in (0, 1]; 0 turns dynamic thresholding off.
    max_value: the largest s.
  Returns:
    x0 with the same shape.
  """
  if dynamic_ratio > 0:
    flat = jnp.abs(x0.reshape(x0.shape[0], -1))  # (B, D)
    s = jnp.maximum(jnp.quantile(flat, dynamic_ratio, axis=1), 1.0)  # (B,)
    if max_value > 0:
      s = jnp.minimum(s, max_value)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -s, s) / s
  if clip:
    return jnp.clip(x0, -1.0, 1.0)
  return x0


def _call(denoise_fn, x_t, t):
  return denoise_fn(x_t, jnp.full((x_t.shape[0],), t, jnp.float32))  # t: (B,) float


def _x0_vp(denoise_fn, prediction, x, sigma, t):
  """x0 from the network at the VP sample x = x_t (DPM-Solver++'s variable)."""
  out = _call(denoise_fn, x, t)
  alpha = lax.rsqrt(1.0 + sigma ** 2)
  if prediction == 'eps':
    return (x - sigma * alpha * out) / alpha
  if prediction == 'v':
    return alpha * x - sigma * alpha * out
  return out


def _x0_ve(denoise_fn, prediction, x, sigma, t):
  """x0 from the network at the VE sample x = x_t / sqrt(abar) (Euler, Heun)."""
  out = _call(denoise_fn, x * lax.rsqrt(1.0 + sigma ** 2), t)
  if prediction == 'eps':
    return x - sigma * out
  if prediction == 'v':
    return out * (-sigma * lax.rsqrt(sigma ** 2 + 1.0)) + x / (sigma ** 2 + 1.0)
  return out


# --- the scans ----------------------------------------------------------------------------
def _noise_source(rng, noise, shape, num_evals, used):
  """Per-evaluation noise: injected (num_evals, *shape), drawn from fold_in(rng, k), or
  none when no evaluation uses any (so deterministic samplers draw nothing)."""
  if noise is not None:
    if noise.shape != (num_evals,) + tuple(shape):
      raise ValueError(f'noise must have shape {(num_evals,) + tuple(shape)}, '
                       f'got {noise.shape}.')
    return noise, lambda k, z: z
  if not used:
    return jnp.zeros((num_evals,), jnp.float32), lambda k, z: jnp.zeros(shape, jnp.float32)
  return (jnp.zeros((num_evals,), jnp.float32),
          lambda k, z: jax.random.normal(jax.random.fold_in(rng, k), shape, jnp.float32))


def dpmpp_tables(sigmas: np.ndarray, order: int, sde: bool) -> dict[str, np.ndarray]:
  """Per-step coefficients of DPM-Solver++ (data prediction, multistep, midpoint):

      x_{i+1} = a_i x_i + b_i (D_i + w_i (D_i - D_{i-1})) + n_i z_i,

  with lambda = -log sigma (log-SNR), h_i = lambda_{i+1} - lambda_i, r_i = h_{i-1} / h_i,
  alpha = 1 / sqrt(1 + sigma^2), sigma_vp = sigma alpha, and
  ODE: a = sigma_vp' / sigma_vp, b = alpha' (1 - e^-h), w = 1 / (2 r) (2nd order) else 0;
  SDE: a = sigma_vp' / sigma_vp e^-h, b = alpha' (1 - e^-2h), n = sigma_vp' sqrt(1 - e^-2h).
  The first step and the step into sigma = 0 are first order (w = 0).

  Args:
    sigmas: (S + 1,) decreasing, the last 0.
    order: 1 or 2.
    sde: the SDE variant (sde-dpmsolver++).
  Returns:
    {'a', 'b', 'w', 'n'}, each (S,) float64.
  """
  s, s_next = sigmas[:-1], sigmas[1:]
  alpha_next = 1.0 / np.sqrt(1.0 + s_next ** 2)
  sv, sv_next = s / np.sqrt(1.0 + s ** 2), s_next * alpha_next
  ratio = s_next / s  # e^-h; 0 into sigma = 0
  if sde:
    a, b = sv_next / sv * ratio, alpha_next * (1.0 - ratio ** 2)
    n = sv_next * np.sqrt(1.0 - ratio ** 2)
  else:
    a, b, n = sv_next / sv, alpha_next * (1.0 - ratio), np.zeros_like(s)
  w = np.zeros_like(s)
  if order == 2:
    with np.errstate(divide='ignore'):
      h = np.log(s) - np.log(s_next)  # inf into sigma = 0
    second = np.arange(len(s)) >= 1
    second &= s_next > 0
    h_prev = h[np.nonzero(second)[0] - 1]
    # 1 / (2 r); first order after a repeated timestep (h_prev = 0: S near T rounds two
    # timesteps together, where diffusers' r = 0 would give inf).
    w[second] = np.where(h_prev > 0, 0.5 * h[second] / np.where(h_prev > 0, h_prev, 1.0), 0.0)
  return {'a': a, 'b': b, 'w': w, 'n': n}


def dpmpp_sample(denoise_fn: DenoiseFn, steps: SigmaSteps, shape, rng: jax.Array,
                 prediction: str = 'eps', order: int = 2, sde: bool = False,
                 x0_fn: Callable[[jax.Array], jax.Array] = lambda x0: x0,
                 x_init: jax.Array | None = None, noise: jax.Array | None = None,
                 return_trajectory: bool = False):
  """DPM-Solver++ (1, 2M, or 2M SDE) from x_T ~ N(0, I) to the data: one lax.scan.

  Args:
    denoise_fn: the network as a function of (x_t, t), t (B,) float timesteps.
    steps: the noise levels (`sigma_steps`).
    shape: (B, H, W, C) of the samples.
    rng: key for the initial noise and (SDE) every step's noise.
    prediction: what the network predicts ('eps', 'x0', 'v').
    order: 1 (= DDIM in log-SNR form) or 2 (multistep).
    sde: the SDE variant (adds noise at every step).
    x0_fn: post-processing of each x0 prediction (clipping, thresholding).
    x_init: (B, H, W, C) standard normal initial noise instead of one drawn from rng.
    noise: (S, B, H, W, C) step noise instead of noise drawn from rng (SDE).
    return_trajectory: also return the sample after every step.
  Returns:
    Samples (B, H, W, C), and with return_trajectory the (S, B, H, W, C) trajectory.
  """
  rng_init, rng_steps = jax.random.split(rng)
  x = jax.random.normal(rng_init, shape, jnp.float32) if x_init is None else x_init
  tab = dpmpp_tables(steps.sigmas, order, sde)
  xs_noise, draw = _noise_source(rng_steps, noise, shape, steps.num_steps, sde)
  xs = (jnp.arange(steps.num_steps), jnp.asarray(steps.sigmas[:-1], jnp.float32),
        jnp.asarray(steps.timesteps, jnp.float32),
        *(jnp.asarray(tab[k], jnp.float32) for k in ('a', 'b', 'w', 'n')), xs_noise)

  def step(carry, inputs):
    x, prev_x0 = carry
    k, sigma, t, a, b, w, n, z = inputs
    x0 = x0_fn(_x0_vp(denoise_fn, prediction, x, sigma, t))
    x = a * x + b * (x0 + w * (x0 - prev_x0))
    if sde:
      x = x + n * draw(k, z)
    return (x, x0), (x if return_trajectory else None)

  (x, _), trajectory = lax.scan(step, (x, jnp.zeros_like(x)), xs)
  return (x, trajectory) if return_trajectory else x


def euler_tables(steps: SigmaSteps, sampler: str, s_churn: float = 0.0, s_tmin: float = 0.0,
                 s_tmax: float = float('inf'), s_noise: float = 1.0) -> dict[str, np.ndarray]:
  """One row per network evaluation of Euler, Heun or Euler ancestral:

      x <- x + pre z                               (EDM churn, before a first stage)
      d = (x - D(x; sigma_in)) / sigma_in           (at the timestep t_in)
      x <- base + d_eff dt + post z'                (base / d_eff: this x / d on a first
                                                     stage, Heun's saved x / mean d on a
                                                     second)

  Args:
    steps: the noise levels.
    sampler: 'euler', 'heun' or 'euler_ancestral'.
    s_churn, s_tmin, s_tmax, s_noise: EDM's stochasticity (euler, heun): gamma =
      min(s_churn / S, sqrt 2 - 1) where s_tmin <= sigma <= s_tmax, sigma_hat =
      (1 + gamma) sigma, with sqrt(sigma_hat^2 - sigma^2) s_noise fresh noise.
  Returns:
    {'sigma_in', 't_in', 'dt', 'pre', 'post', 'second'}, each (NFE,) float64.
  """
  sigmas, num_steps = steps.sigmas, steps.num_steps
  rows = []
  for i in range(num_steps):
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    gamma = 0.0
    if sampler != 'euler_ancestral' and s_tmin <= sigma <= s_tmax:
      gamma = min(s_churn / num_steps, 2 ** 0.5 - 1)
    sigma_hat = sigma * (1.0 + gamma)
    t_hat = steps.timesteps[i] if gamma == 0 else float(sigma_to_t(sigma_hat, steps.log_sigmas))
    pre = s_noise * np.sqrt(sigma_hat ** 2 - sigma ** 2)
    if sampler == 'euler_ancestral':  # k-diffusion's get_ancestral_step with eta = 1
      up = np.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2)
      down = np.sqrt(sigma_next ** 2 - up ** 2)
      rows.append((sigma, t_hat, down - sigma, 0.0, up, 0.0))
      continue
    rows.append((sigma_hat, t_hat, sigma_next - sigma_hat, pre, 0.0, 0.0))
    if sampler == 'heun' and sigma_next > 0:
      rows.append((sigma_next, steps.timesteps[i + 1], sigma_next - sigma_hat, 0.0, 0.0, 1.0))
  cols = np.asarray(rows, np.float64).T
  return dict(zip(('sigma_in', 't_in', 'dt', 'pre', 'post', 'second'), cols))


def euler_sample(denoise_fn: DenoiseFn, steps: SigmaSteps, shape, rng: jax.Array,
                 sampler: str = 'euler', prediction: str = 'eps', s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float('inf'), s_noise: float = 1.0,
                 x0_fn: Callable[[jax.Array], jax.Array] = lambda x0: x0,
                 x_init: jax.Array | None = None, noise: jax.Array | None = None,
                 return_trajectory: bool = False):
  """Euler, Heun (EDM Algorithm 2) or Euler ancestral on the VE probability-flow ODE,
  one lax.scan over the network evaluations.

  Args:
    denoise_fn, steps, shape, rng, prediction, x0_fn, return_trajectory: as in
      `dpmpp_sample`.
    sampler: 'euler', 'heun' or 'euler_ancestral'.
    s_churn, s_tmin, s_tmax, s_noise: EDM's churn (see `euler_tables`).
    x_init: (B, H, W, C) standard normal initial noise (scaled here by sigma_max).
    noise: (NFE, B, H, W, C) the noise of each evaluation (churn, or ancestral).
  Returns:
    Samples (B, H, W, C), and with return_trajectory the (NFE, B, H, W, C) samples after
    every evaluation (diffusers' sample after each `step` call).
  """
  rng_init, rng_steps = jax.random.split(rng)
  x = jax.random.normal(rng_init, shape, jnp.float32) if x_init is None else x_init
  x = x * np.float32(steps.sigmas[0])
  tab = euler_tables(steps, sampler, s_churn, s_tmin, s_tmax, s_noise)
  num_evals = len(tab['dt'])
  churn, ancestral = bool(np.any(tab['pre'] > 0)), bool(np.any(tab['post'] > 0))
  xs_noise, draw = _noise_source(rng_steps, noise, shape, num_evals, churn or ancestral)
  xs = (jnp.arange(num_evals),
        *(jnp.asarray(tab[k], jnp.float32)
          for k in ('sigma_in', 't_in', 'dt', 'pre', 'post', 'second')), xs_noise)

  def step(carry, inputs):
    x, x_saved, d_saved = carry
    k, sigma, t, dt, pre, post, second, z = inputs
    z = draw(k, z) if churn or ancestral else None
    if churn:
      x = x + pre * z
    d = (x - x0_fn(_x0_ve(denoise_fn, prediction, x, sigma, t))) / sigma
    is_second = second > 0
    base = jnp.where(is_second, x_saved, x)
    x_new = base + jnp.where(is_second, 0.5 * (d_saved + d), d) * dt
    if ancestral:
      x_new = x_new + post * z
    return (x_new, x, d), (x_new if return_trajectory else None)

  (x, _, _), trajectory = lax.scan(step, (x, jnp.zeros_like(x), jnp.zeros_like(x)), xs)
  return (x, trajectory) if return_trajectory else x


def sample(denoise_fn: DenoiseFn, alphas_cumprod, shape, rng: jax.Array, sampler: str,
           num_steps: int, prediction: str = 'eps', sigma_schedule: str = 'model',
           rho: float = 7.0, sigma_min: float = 0.0, sigma_max: float = 0.0,
           s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float('inf'),
           s_noise: float = 1.0, clip_x0: bool = False, dynamic_threshold: float = 0.0,
           threshold_max: float = 0.0) -> jax.Array:
  """Runs `sampler` (one of SAMPLERS) for `num_steps` steps; returns (B, H, W, C) samples.

  Args are those of `sigma_steps`, `dpmpp_sample` / `euler_sample` and `threshold_x0`.
  """
  steps = sigma_steps(alphas_cumprod, sampler, num_steps, sigma_schedule, rho, sigma_min,
                      sigma_max)
  x0_fn = lambda x0: threshold_x0(x0, clip_x0, dynamic_threshold, threshold_max)
  if sampler in _DPMPP:
    return dpmpp_sample(denoise_fn, steps, shape, rng, prediction,
                        order=1 if sampler == 'dpmpp_1' else 2,
                        sde=sampler == 'dpmpp_2m_sde', x0_fn=x0_fn)
  return euler_sample(denoise_fn, steps, shape, rng, sampler, prediction, s_churn, s_tmin,
                      s_tmax, s_noise, x0_fn=x0_fn)
