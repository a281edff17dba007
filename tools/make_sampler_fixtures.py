"""Writes tests/data/samplers/: diffusers' schedulers run step by step on a fake network.

    python tools/make_sampler_fixtures.py   (torch + diffusers, tools/README.md; once)

For each case (scheduler, eps / v / x0 prediction, model or Karras sigmas, linear betas with
T = 1000 or a short T = 20), records the scheduler's sigmas and timesteps, the initial
noise, the noise each stochastic step drew, and the sample after every `step` call, with

    network(x, t) = 0.5 x cos(t / T) + 0.1 sin(x)     (a closed form; any output type)

so tests/test_sigma_samplers.py can run gen_jax's samplers on the same network and noise
(without torch) and compare every step. It takes no flags of its own (absl's, such as
--help, only); torch and diffusers are imported only when it runs, so `--help` works
without them.
"""

import json
import os

from absl import app
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests', 'data',
                   'samplers')
SHAPE = (2, 4, 4, 1)  # (B, H, W, C); the network is elementwise, so layout does not matter
PREDICTION = {'eps': 'epsilon', 'v': 'v_prediction', 'x0': 'sample'}
SCHEDULES = {'T1000': dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02),
             'T20': dict(num_train_timesteps=20, beta_start=1e-3, beta_end=0.2)}


def network(x, t, num_timesteps):
  import torch  # pylint: disable=g-import-not-at-top
  return 0.5 * x * torch.cos(t.to(torch.float64) / num_timesteps).to(x.dtype) + 0.1 * torch.sin(x)


def make_scheduler(case):
  from diffusers import DPMSolverMultistepScheduler  # pylint: disable=g-import-not-at-top
  from diffusers import EulerAncestralDiscreteScheduler  # pylint: disable=g-import-not-at-top
  from diffusers import EulerDiscreteScheduler  # pylint: disable=g-import-not-at-top
  from diffusers import HeunDiscreteScheduler  # pylint: disable=g-import-not-at-top
  common = dict(SCHEDULES[case['schedule']], beta_schedule='linear',
                prediction_type=PREDICTION[case['prediction']])
  karras = case['sigma_schedule'] == 'karras'
  name = case['sampler']
  if name.startswith('dpmpp'):
    return DPMSolverMultistepScheduler(
        **common, solver_order=1 if name == 'dpmpp_1' else 2,
        algorithm_type='sde-dpmsolver++' if name == 'dpmpp_2m_sde' else 'dpmsolver++',
        use_karras_sigmas=karras, thresholding=case.get('dynamic_threshold', 0) > 0,
        dynamic_thresholding_ratio=case.get('dynamic_threshold', 0.995),
        sample_max_value=case.get('threshold_max', 1.0))
  if name == 'euler':
    return EulerDiscreteScheduler(**common, use_karras_sigmas=karras)
  if name == 'heun':
    return HeunDiscreteScheduler(**common, use_karras_sigmas=karras,
                                 clip_sample=case.get('clip_x0', False))
  assert name == 'euler_ancestral' and not karras  # diffusers has no Karras option here
  return EulerAncestralDiscreteScheduler(**common)


def run(case, seed):
  import torch  # pylint: disable=g-import-not-at-top
  sched = make_scheduler(case)
  sched.set_timesteps(case['num_steps'])
  num_timesteps = SCHEDULES[case['schedule']]['num_train_timesteps']
  gen = torch.Generator().manual_seed(seed)
  x_init = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
  x = x_init * sched.init_noise_sigma
  noises, trajectory = [], []
  for t in sched.timesteps:
    out = network(sched.scale_model_input(x, t), t, num_timesteps)
    if case['sampler'] == 'dpmpp_2m_sde':
      z = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
      x = sched.step(out, t, x, variance_noise=z).prev_sample
    elif case['sampler'] == 'euler_ancestral':
      state = gen.get_state()
      z = torch.randn(SHAPE, generator=gen, dtype=torch.float32)  # what step() will draw
      gen.set_state(state)
      x = sched.step(out, t, x, generator=gen).prev_sample
    else:
      z = torch.zeros(SHAPE)
      x = sched.step(out, t, x).prev_sample
    noises.append(z.numpy())
    trajectory.append(x.numpy())
  return {'sigmas': sched.sigmas.numpy().astype(np.float32),
          'timesteps': sched.timesteps.numpy().astype(np.float32),
          'x_init': x_init.numpy(), 'noise': np.stack(noises), 'trajectory': np.stack(trajectory)}


def cases():
  out = []
  for sampler in ('dpmpp_2m', 'euler', 'heun'):
    for sigma_schedule in ('model', 'karras'):
      for prediction in ('eps', 'v'):
        out.append(dict(sampler=sampler, sigma_schedule=sigma_schedule, prediction=prediction,
                        schedule='T1000', num_steps=10))
  out += [
      dict(sampler='dpmpp_1', sigma_schedule='model', prediction='eps', schedule='T1000',
           num_steps=10),
      dict(sampler='dpmpp_2m', sigma_schedule='model', prediction='x0', schedule='T1000',
           num_steps=10),
      dict(sampler='dpmpp_2m_sde', sigma_schedule='model', prediction='eps', schedule='T1000',
           num_steps=10),
      dict(sampler='dpmpp_2m_sde', sigma_schedule='karras', prediction='v', schedule='T1000',
           num_steps=10),
      dict(sampler='dpmpp_2m', sigma_schedule='model', prediction='eps', schedule='T1000',
           num_steps=10, dynamic_threshold=0.9, threshold_max=1.5),
      dict(sampler='euler', sigma_schedule='model', prediction='x0', schedule='T1000',
           num_steps=10),
      dict(sampler='heun', sigma_schedule='model', prediction='eps', schedule='T1000',
           num_steps=10, clip_x0=True),
      dict(sampler='euler_ancestral', sigma_schedule='model', prediction='eps',
           schedule='T1000', num_steps=10),
      dict(sampler='euler_ancestral', sigma_schedule='model', prediction='v', schedule='T1000',
           num_steps=10),
  ]
  for sampler in ('dpmpp_2m', 'euler', 'heun'):
    for sigma_schedule in ('model', 'karras'):
      out.append(dict(sampler=sampler, sigma_schedule=sigma_schedule, prediction='eps',
                      schedule='T20', num_steps=6))
  for i, case in enumerate(out):
    case['name'] = '{sampler}_{sigma_schedule}_{prediction}_{schedule}_S{num_steps}'.format(
        **case) + ('_thresh' if 'dynamic_threshold' in case else '') + (
            '_clip' if case.get('clip_x0') else '')
    case['seed'] = i
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  os.makedirs(OUT, exist_ok=True)
  arrays = {}
  all_cases = cases()
  for case in all_cases:
    for key, value in run(case, case['seed']).items():
      arrays[f'{case["name"]}/{key}'] = value
  np.savez_compressed(os.path.join(OUT, 'diffusers_samplers.npz'), **arrays)
  with open(os.path.join(OUT, 'cases.json'), 'w') as f:
    json.dump({'network': '0.5 x cos(t / T) + 0.1 sin(x)', 'shape': SHAPE,
               'schedules': SCHEDULES, 'cases': all_cases}, f, indent=1)
    f.write('\n')
  print(f'wrote {len(all_cases)} cases to {OUT}')


if __name__ == '__main__':
  app.run(main)
