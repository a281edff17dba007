"""DPM-Solver++ and the EDM samplers: step for step against diffusers' schedulers (committed
fixtures from tools/make_sampler_fixtures.py), closed forms, and one compiled scan each."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.diffusion import guidance
from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules
from gen_jax.diffusion import sigma_samplers

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'samplers')
with open(os.path.join(DATA, 'cases.json')) as _f:
  META = json.load(_f)
CASES = {c['name']: c for c in META['cases']}


@pytest.fixture(scope='module')
def fixtures():
  with np.load(os.path.join(DATA, 'diffusers_samplers.npz')) as f:
    return {k: f[k] for k in f.files}


def fake_network(num_timesteps):
  """The fixtures' network: 0.5 x cos(t / T) + 0.1 sin(x)."""
  def fn(x, t):
    return 0.5 * x * jnp.cos(t / num_timesteps)[:, None, None, None] + 0.1 * jnp.sin(x)
  return fn


def abar_of(case):
  s = META['schedules'][case['schedule']]
  sched = schedules.make_schedule('linear', s['num_train_timesteps'], s['beta_start'],
                                  s['beta_end'])
  return sched.alphas_cumprod, s['num_train_timesteps']


def run_case(case, fix):
  abar, num_timesteps = abar_of(case)
  name = case['name']
  steps = sigma_samplers.sigma_steps(abar, case['sampler'], case['num_steps'],
                                     case['sigma_schedule'])
  x0_fn = lambda x0: sigma_samplers.threshold_x0(x0, case.get('clip_x0', False),
                                                 case.get('dynamic_threshold', 0.0),
                                                 case.get('threshold_max', 0.0))
  common = dict(prediction=case['prediction'], x0_fn=x0_fn,
                x_init=jnp.asarray(fix[f'{name}/x_init']),
                noise=jnp.asarray(fix[f'{name}/noise']), return_trajectory=True)
  shape = tuple(META['shape'])
  net = fake_network(num_timesteps)
  if case['sampler'].startswith('dpmpp'):
    _, traj = sigma_samplers.dpmpp_sample(
        net, steps, shape, jax.random.PRNGKey(0), order=1 if case['sampler'] == 'dpmpp_1' else 2,
        sde=case['sampler'] == 'dpmpp_2m_sde', **common)
  else:
    _, traj = sigma_samplers.euler_sample(net, steps, shape, jax.random.PRNGKey(0),
                                          case['sampler'], **common)
  return steps, traj


@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_diffusers_step_for_step(name, fixtures):
  case = CASES[name]
  steps, traj = run_case(case, fixtures)
  want_sigmas, want_t = fixtures[f'{name}/sigmas'], fixtures[f'{name}/timesteps']
  if case['sampler'] == 'heun':  # diffusers lists one (sigma, t) per evaluation
    tab = sigma_samplers.euler_tables(steps, 'heun')
    np.testing.assert_allclose(tab['sigma_in'], want_sigmas[:-1], rtol=2e-5)
    np.testing.assert_allclose(tab['t_in'], want_t, rtol=1e-5, atol=1e-4)
  else:
    np.testing.assert_allclose(steps.sigmas, want_sigmas, rtol=2e-5)
    np.testing.assert_allclose(steps.timesteps, want_t, rtol=1e-5, atol=1e-4)
  want = fixtures[f'{name}/trajectory']
  assert traj.shape == want.shape
  # Samples of VE samplers start at sigma_max ~ 157: compare relative to each step's scale.
  scale = np.maximum(np.abs(want).max(axis=(1, 2, 3, 4), keepdims=True), 1.0)
  np.testing.assert_allclose(traj / scale, want / scale, rtol=0, atol=2e-5)


def test_fixtures_cover_every_sampler_schedule_and_prediction():
  seen = {(c['sampler'], c['sigma_schedule']) for c in CASES.values()}
  for sampler in sigma_samplers.SAMPLERS:
    assert (sampler, 'model') in seen
  for sampler in ('dpmpp_2m', 'euler', 'heun', 'dpmpp_2m_sde'):
    assert (sampler, 'karras') in seen
  assert {c['prediction'] for c in CASES.values()} == {'eps', 'v', 'x0'}


def test_nfe():
  assert sigma_samplers.nfe('dpmpp_2m', 20) == 20
  assert sigma_samplers.nfe('heun', 10) == 19
  assert sigma_samplers.nfe('euler_ancestral', 7) == 7
  with pytest.raises(ValueError, match='unknown sampler'):
    sigma_samplers.nfe('plms', 10)


def test_sigma_to_t_inverts_the_trained_sigmas_and_interpolates_log_sigma():
  abar = schedules.make_schedule('linear', 1000).alphas_cumprod
  sig = sigma_samplers.model_sigmas(abar)
  np.testing.assert_allclose(sigma_samplers.sigma_to_t(sig, np.log(sig)), np.arange(1000),
                             atol=1e-6)
  mid = np.exp(0.25 * np.log(sig[10]) + 0.75 * np.log(sig[11]))
  assert sigma_samplers.sigma_to_t(mid, np.log(sig)) == pytest.approx(10.75, abs=1e-9)


def test_karras_sigmas_closed_form():
  s = sigma_samplers.karras_sigmas(0.002, 80.0, 3, rho=7.0)
  mid = ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
  np.testing.assert_allclose(s, [80.0, mid, 0.002], rtol=1e-12)
  steps = sigma_samplers.sigma_steps(schedules.make_schedule('linear', 1000).alphas_cumprod,
                                     'euler', 5, 'karras', rho=3.0, sigma_min=0.1,
                                     sigma_max=10.0)
  np.testing.assert_allclose(steps.sigmas[[0, 4, 5]], [10.0, 0.1, 0.0], rtol=1e-12)


def test_dpmpp_1_is_ddim_with_and_without_clipping():
  """DPM-Solver-1 in data prediction is DDIM (Lu et al. 2022, section 3.1)."""
  sched = schedules.make_schedule('linear', 100, 1e-4, 0.05)
  net = lambda x, t: 0.3 * x + 0.01 * t.astype(x.dtype)[:, None, None, None]
  rng = jax.random.PRNGKey(4)
  for clip in (False, True):
    got = sigma_samplers.sample(net, sched.alphas_cumprod, (3, 2, 2, 1), rng, 'dpmpp_1', 10,
                                clip_x0=clip)
    # DPM-Solver visits round(linspace(0, T-1, S+1))[::-1][:-1], then x0: DDIM's timesteps
    # except that the last step lands on the data from t = 10 rather than t = 0.
    steps = sigma_samplers.sigma_steps(sched.alphas_cumprod, 'dpmpp_1', 10)
    x = jax.random.normal(jax.random.split(rng)[0], (3, 2, 2, 1))
    abar = np.asarray(sched.alphas_cumprod, np.float64)
    ts = steps.timesteps.astype(int)
    x = np.asarray(x, np.float64)
    for i, t in enumerate(ts):
      eps = 0.3 * x + 0.01 * t
      x0 = (x - np.sqrt(1 - abar[t]) * eps) / np.sqrt(abar[t])
      if clip:
        x0 = np.clip(x0, -1, 1)
        eps = (x - np.sqrt(abar[t]) * x0) / np.sqrt(1 - abar[t])
      a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else 1.0
      x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('sampler', ['euler', 'heun'])
def test_churn_follows_edm_algorithm_2(sampler):
  """With s_churn the network sees the churned sample at sigma_hat (EDM, k-diffusion)."""
  abar = schedules.make_schedule('linear', 200, 1e-4, 0.05).alphas_cumprod
  log_sig = np.log(sigma_samplers.model_sigmas(abar))
  steps = sigma_samplers.sigma_steps(abar, sampler, 6, 'karras')
  churn, tmin, tmax, snoise = 3.0, 0.5, 20.0, 1.01
  tab = sigma_samplers.euler_tables(steps, sampler, churn, tmin, tmax, snoise)
  shape = (2, 2, 2, 1)
  noise = jax.random.normal(jax.random.PRNGKey(1), (len(tab['dt']),) + shape)
  x_init = jax.random.normal(jax.random.PRNGKey(2), shape)
  eps_fn = lambda x, t: 0.2 * x + 0.001 * t  # numpy network on x_t and float t
  got = sigma_samplers.euler_sample(
      lambda x, t: eps_fn(x, t[:, None, None, None]), steps, shape, jax.random.PRNGKey(0),
      sampler, s_churn=churn, s_tmin=tmin, s_tmax=tmax, s_noise=snoise, x_init=x_init,
      noise=noise)

  def denoise(x, sigma):  # x0 of the VE sample at noise level sigma
    t = np.interp(np.log(sigma), log_sig, np.arange(200.0))
    return x - sigma * eps_fn(x / np.sqrt(1 + sigma ** 2), t)

  sig = steps.sigmas
  x = np.asarray(x_init, np.float64) * sig[0]
  k, noise = 0, np.asarray(noise, np.float64)
  for i in range(len(sig) - 1):
    gamma = min(churn / (len(sig) - 1), 2 ** 0.5 - 1) if tmin <= sig[i] <= tmax else 0.0
    sigma_hat = sig[i] * (1 + gamma)
    x = x + noise[k] * snoise * np.sqrt(sigma_hat ** 2 - sig[i] ** 2)
    d = (x - denoise(x, sigma_hat)) / sigma_hat
    dt = sig[i + 1] - sigma_hat
    k += 1
    if sampler == 'heun' and sig[i + 1] > 0:
      x2 = x + d * dt
      d2 = (x2 - denoise(x2, sig[i + 1])) / sig[i + 1]
      d = (d + d2) / 2
      k += 1
    x = x + d * dt
  assert k == len(tab['dt'])
  assert 0 < np.sum(tab['pre'] > 0) < steps.num_steps  # s_tmin / s_tmax leave some steps out
  np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-4)


STEPS_FOR_5_PERCENT = {'dpmpp_2m': 25, 'heun': 25, 'dpmpp_2m_sde': 50, 'dpmpp_1': 100,
                       'euler': 100, 'euler_ancestral': 400}


@pytest.mark.parametrize('sampler', sigma_samplers.SAMPLERS)
def test_exact_score_samples_gaussian_data(sampler):
  """Data x0 ~ N(0, s^2): the optimal eps is known in closed form, so samples have std s
  (to the discretisation error: the second-order samplers get there in fewer steps)."""
  s = 0.5
  sched = schedules.make_schedule('linear', 1000)

  def oracle(x, t):  # t fractional: abar interpolated through sigma
    sig = jnp.interp(t, jnp.arange(1000.0), jnp.sqrt((1 - sched.alphas_cumprod) /
                                                     sched.alphas_cumprod))
    abar = (1.0 / (1.0 + sig ** 2))[:, None, None, None]
    return jnp.sqrt(1 - abar) * x / (abar * s ** 2 + 1 - abar)

  x = sigma_samplers.sample(oracle, sched.alphas_cumprod, (4000, 1, 1, 1),
                            jax.random.PRNGKey(1), sampler, STEPS_FOR_5_PERCENT[sampler],
                            sigma_schedule='karras')
  assert float(jnp.std(x)) == pytest.approx(s, rel=0.05)
  assert abs(float(jnp.mean(x))) < 0.05


@pytest.mark.parametrize('sampler', sigma_samplers.SAMPLERS)
def test_one_scan_traces_the_network_once(sampler):
  sched = schedules.make_schedule('linear', 50, 1e-3, 0.1)
  traces = []

  def counting(x, t):
    traces.append(1)
    return 0.3 * x

  fn = jax.jit(lambda r: sigma_samplers.sample(counting, sched.alphas_cumprod, (2, 4, 4, 1), r,
                                               sampler, 8, s_churn=1.0))
  jaxpr = jax.make_jaxpr(fn)(jax.random.PRNGKey(0))
  assert len(traces) == 1
  assert 'scan' in str(jaxpr) and str(jaxpr).count('scan[') == 1
  assert fn(jax.random.PRNGKey(0)).shape == (2, 4, 4, 1)


def test_dispatch_through_samplers_sample_and_nfe():
  sched = schedules.make_schedule('linear', 50, 1e-3, 0.1)
  calls = []

  def counting(x, t):
    calls.append(t)
    return 0.3 * x

  import ml_collections  # pylint: disable=g-import-not-at-top
  cfg = ml_collections.ConfigDict(dict(
      sampler='heun', num_steps=4, clip_x0=True, sigma_schedule='karras', rho=7.0,
      sigma_min=0.0, sigma_max=0.0, s_churn=0.0, s_tmin=0.0, s_tmax=float('inf'),
      s_noise=1.0, dynamic_threshold=0.0, threshold_max=0.0))
  with jax.disable_jit():
    x = samplers.sample(counting, sched, (1, 2, 2, 1), jax.random.PRNGKey(0), cfg, 'eps')
  assert x.shape == (1, 2, 2, 1)
  assert samplers.num_evaluations(cfg, 50) == 7
  cfg.sampler = 'ddpm'
  assert samplers.num_evaluations(cfg, 50) == 50
  cfg.sampler = 'plms'
  with pytest.raises(ValueError, match='unknown sampler'):
    samplers.sample(counting, sched, (1, 2, 2, 1), jax.random.PRNGKey(0), cfg, 'eps')


@pytest.mark.parametrize('sampler', sigma_samplers.SAMPLERS)
def test_guidance_and_thresholding_with_every_sampler(sampler):
  """w = 0 guidance is conditional sampling exactly; w > 0 changes the samples; clipping and
  dynamic thresholding keep every x0 prediction in [-1, 1]."""
  sched = schedules.make_schedule('linear', 50, 1e-3, 0.1)
  null = 10
  y = jnp.array([1, 2, 3, 4])

  def stub(x, t, labels):
    labels = labels.astype(x.dtype)[:, None, None, None]
    return jnp.where(labels == null, -0.2 * x, 0.1 * x + 0.01 * labels)

  def run(fn, **kw):
    return sigma_samplers.sample(fn, sched.alphas_cumprod, (4, 2, 2, 1), jax.random.PRNGKey(3),
                                 sampler, 6, **kw)

  plain = run(lambda x, t: stub(x, t, y))
  guided0 = run(lambda x, t: guidance.guided(stub, x, t, y, null, 0.0))
  np.testing.assert_allclose(guided0, plain, rtol=1e-6, atol=1e-6)
  guided3 = run(lambda x, t: guidance.guided(stub, x, t, y, null, 3.0))
  assert not np.allclose(guided3, plain, atol=1e-3)
  # A network whose x0 predictions leave the data range: the last x0 is the sample.
  wild = lambda x, t: -3.0 * x
  assert float(jnp.abs(run(wild)).max()) > 1.0
  assert float(jnp.abs(run(wild, clip_x0=True)).max()) <= 1.0 + 1e-6
  assert float(jnp.abs(run(wild, dynamic_threshold=0.9)).max()) <= 1.0 + 1e-6


def test_dynamic_threshold_closed_form():
  x0 = jnp.array([[0.5, -3.0, 2.0, 1.0], [0.1, 0.2, -0.3, 0.4]]).reshape(2, 2, 2, 1)
  got = sigma_samplers.threshold_x0(x0, clip=False, dynamic_ratio=1.0)
  np.testing.assert_allclose(got[0].ravel(), [0.5 / 3, -1.0, 2.0 / 3, 1.0 / 3], rtol=1e-6)
  np.testing.assert_allclose(got[1], x0[1], rtol=1e-6)  # s clamps to 1: plain clipping
  capped = sigma_samplers.threshold_x0(x0, clip=False, dynamic_ratio=1.0, max_value=2.0)
  np.testing.assert_allclose(capped[0].ravel(), [0.25, -1.0, 1.0, 0.5], rtol=1e-6)


def test_dpmpp_with_as_many_steps_as_timesteps_stays_finite():
  """S = T rounds two DPM-Solver++ timesteps together (h = 0): no division by it."""
  abar = schedules.make_schedule('linear', 20, 1e-3, 0.2).alphas_cumprod
  steps = sigma_samplers.sigma_steps(abar, 'dpmpp_2m', 20)
  assert len(np.unique(steps.timesteps)) < 20  # the repeat this test is about
  tab = sigma_samplers.dpmpp_tables(steps.sigmas, order=2, sde=False)
  assert np.all(np.isfinite(tab['w'])) and np.all(np.isfinite(tab['a']))
  x = sigma_samplers.dpmpp_sample(lambda x, t: 0.3 * x, steps, (2, 2, 2, 1),
                                  jax.random.PRNGKey(0))
  assert bool(jnp.all(jnp.isfinite(x)))
