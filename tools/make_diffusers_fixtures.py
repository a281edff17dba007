"""Makes tests/data/diffusers/: tiny random-weight diffusers UNet2DModels and their outputs.

    GEN_JAX_PYTHON=PATH/TO/gen_jax/python python tools/make_diffusers_fixtures.py [--full_cifar10]

Run with a Python that has torch and diffusers (the PyTorch environment of
tools/README.md); the gen_jax side runs in a subprocess with GEN_JAX_PYTHON (the Python of
gen_jax's environment), so
the tests that read these files never need torch. Writes, for two architectures:

  cifar_like/    a model folder (config.json, safetensors, scheduler_config.json): the
                 DDPM CIFAR-10 U-Net's layout shrunk (3 levels, 2 resnets a level,
                 attention at the second level and in the middle block); DDPMScheduler
                 with eps prediction, fixed_large variance, x0 clipping.
  bedroom_like/  a pipeline folder (model_index.json, unet/, scheduler/) shaped like the
                 256-pixel google/ddpm-* U-Nets (5 levels, attention at a low resolution),
                 one channel (so that launch.py can sample it with the embedded digits);
                 squaredcos_cap_v2 betas, v prediction, fixed_small variance, no clipping.

and in each, expected.npz: the U-Net's output on fixed inputs and timesteps, and the final
samples of DDPMScheduler (all T = 20 steps) and DDIMScheduler (5 'leading' steps, eta 0 and
0.5) stepping the network, started from, and given, the noise gen_jax's samplers draw from
PRNGKey(0), PRNGKey(1) and PRNGKey(2) (gen_jax/diffusion/samplers.py: split the key into
(initial noise, step key); the noise of timestep t is normal(fold_in(step key, t))).
DDIM steps use use_clipped_model_output=True: gen_jax re-derives eps from the clipped x0.

  defaults_like/ a model folder with diffusers' own UNet2DModel defaults where they differ
                 from the DDPM U-Net (flip_sin_to_cos, freq_shift 0, norm_eps 1e-5,
                 downsample_padding 1) and 2-channel attention heads.

cifar_like_bin/ holds cifar_like's weights as the google/ddpm-* checkpoints store theirs:
a torch.save'd diffusion_pytorch_model.bin with diffusers 0.0.x's attention names
(query/key/value/proj_attn), read by gen_jax without torch.

It then imports cifar_like with experiments.import_diffusers, exports it back with
experiments.export_diffusers, loads the export with UNet2DModel.from_pretrained and
DDPMPipeline.from_pretrained, and writes what it saw to export_check.json.

--full_cifar10 instead checks the full-size google/ddpm-cifar10-32 architecture (random
weights, 35.7M parameters, imported with configs/ddpm_cifar10.py; nothing is written to
the repository but full_cifar10_check.json). --only=NAME, --legacy_bin and --export_check
remake one part. torch and diffusers are imported only when the script runs, so `--help`
works without them.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_bool('full_cifar10', False, 'Only the full-size CIFAR-10 check.')
flags.DEFINE_bool('legacy_bin', False,
                  'Only cifar_like_bin/, from the cifar_like/ already there.')
flags.DEFINE_string('only', '', 'Only this fixture of MODELS (cifar_like, bedroom_like, '
                    'defaults_like).')
flags.DEFINE_bool('export_check', False,
                  'Only export_check.json, from the cifar_like/ already there.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, 'tests', 'data', 'diffusers')
GEN_JAX_PYTHON = os.environ.get('GEN_JAX_PYTHON', '/work/venv/bin/python')
BATCH = 2
TIMESTEPS = (0, 17, 999)  # network inputs: the embedding at small and large t
DDIM_STEPS = 5
SAMPLER_KEYS = {'ddpm': 0, 'ddim_eta0': 1, 'ddim_eta0.5': 2}

MODELS = {
    'cifar_like': dict(
        layout='model',
        unet=dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(4, 8, 8),
                  layers_per_block=2, norm_num_groups=2,
                  down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D'),
                  up_block_types=('UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D')),
        scheduler=dict(num_train_timesteps=20, beta_schedule='linear', beta_start=1e-3,
                       beta_end=0.2, prediction_type='epsilon', variance_type='fixed_large',
                       clip_sample=True)),
    'bedroom_like': dict(
        layout='pipeline',
        unet=dict(sample_size=32, in_channels=1, out_channels=1,
                  block_out_channels=(4, 4, 8, 8, 8), layers_per_block=1,
                  norm_num_groups=2,
                  down_block_types=('DownBlock2D',) * 3 + ('AttnDownBlock2D', 'DownBlock2D'),
                  up_block_types=('UpBlock2D', 'AttnUpBlock2D') + ('UpBlock2D',) * 3),
        scheduler=dict(num_train_timesteps=20, beta_schedule='squaredcos_cap_v2',
                       prediction_type='v_prediction', variance_type='fixed_small',
                       clip_sample=False)),
    'defaults_like': dict(
        layout='model',
        family=dict(flip_sin_to_cos=True, freq_shift=0, norm_eps=1e-5, downsample_padding=1,
                    attention_head_dim=2),  # diffusers' defaults, with 2-channel heads
        unet=dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(4, 8),
                  layers_per_block=1, norm_num_groups=2,
                  down_block_types=('DownBlock2D', 'AttnDownBlock2D'),
                  up_block_types=('AttnUpBlock2D', 'UpBlock2D')),
        scheduler=dict(num_train_timesteps=20, beta_schedule='linear', beta_start=1e-3,
                       beta_end=0.2, prediction_type='epsilon', variance_type='fixed_small',
                       clip_sample=True)),
}
# The DDPM papers' U-Net as the google/ddpm-* checkpoints configure it.
DDPM_FAMILY = dict(act_fn='silu', attention_head_dim=None, center_input_sample=False,
                   downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6,
                   mid_block_scale_factor=1, time_embedding_type='positional')
GOOGLE_CIFAR10 = dict(sample_size=32, in_channels=3, out_channels=3,
                      block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                      norm_num_groups=32,
                      down_block_types=('DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D',
                                        'DownBlock2D'),
                      up_block_types=('UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'))


def rel_err(a, b) -> float:
  """max |a - b| / max |b|: the error relative to the output's scale."""
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def nchw(x):
  return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def nhwc(x):
  return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def gen_jax(*args) -> None:
  """Runs this script's gen_jax half (`--jax ...`) in the gen_jax environment."""
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  subprocess.run([GEN_JAX_PYTHON, os.path.abspath(__file__), '--jax', *args], check=True,
                 env=env, cwd=REPO)


# --- the gen_jax half (GEN_JAX_PYTHON) ---------------------------------------------------

def jax_main(args) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  command = args[0]
  if command == 'noise':  # noise.npz shape(H,W,C) T: what the samplers draw, per key
    out, shape, num_timesteps = args[1], tuple(json.loads(args[2])), int(args[3])
    arrays = {}
    for name, seed in SAMPLER_KEYS.items():
      rng_init, rng_steps = jax.random.split(jax.random.PRNGKey(seed))
      arrays[f'{name}/x_T'] = jax.random.normal(rng_init, shape, jnp.float32)
      arrays[f'{name}/noise'] = jnp.stack([
          jax.random.normal(jax.random.fold_in(rng_steps, t), shape, jnp.float32)
          for t in range(num_timesteps)])
    np.savez(out, **{k: np.asarray(v) for k, v in arrays.items()})
  elif command == 'outputs':  # outputs.npz workdir inputs.npz: load_denoiser's outputs
    from experiments.diffusion import experiment as diffusion  # pylint: disable=g-import-not-at-top
    out, workdir, inputs = args[1:4]
    f = diffusion.load_denoiser(workdir)
    with np.load(inputs) as data:
      np.savez(out, out=np.asarray(f(data['x'], data['t'])))
  else:
    raise SystemExit(f'unknown --jax command {command}')


# --- the diffusers half ------------------------------------------------------------------

def make_unet(unet_kwargs, seed, family=None):
  import torch  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  unet = diffusers.UNet2DModel(**dict(DDPM_FAMILY, **(family or {})), **unet_kwargs).eval()
  with torch.no_grad():  # no parameter at its 0/1 init: every one of them matters
    for name, p in unet.named_parameters():
      if 'norm' in name:
        p.copy_((1.0 if name.endswith('weight') else 0.0) + 0.2 * torch.randn_like(p))
      elif name.endswith('bias'):
        p.copy_(0.1 * torch.randn_like(p))
  return unet


def unet_out(unet, x_nhwc, t):
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    return nhwc(unet(torch.from_numpy(nchw(x_nhwc)), torch.as_tensor(t)).sample.numpy())


def run_ddpm(unet, scheduler_config, x_t, noise):
  import torch  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top
  from diffusers.schedulers import scheduling_ddpm  # pylint: disable=g-import-not-at-top
  scheduler = diffusers.DDPMScheduler.from_config(scheduler_config)
  scheduler.set_timesteps(scheduler_config['num_train_timesteps'])
  x = torch.from_numpy(nchw(x_t))
  original = scheduling_ddpm.randn_tensor
  try:
    for t in scheduler.timesteps:
      given = torch.from_numpy(nchw(noise[int(t)]))
      scheduling_ddpm.randn_tensor = lambda *a, given=given, **k: given  # the noise given
      with torch.no_grad():
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample
  finally:
    scheduling_ddpm.randn_tensor = original
  return nhwc(x.numpy())


def run_ddim(unet, scheduler_config, x_t, noise, eta):
  import torch  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top
  scheduler = diffusers.DDIMScheduler.from_config(scheduler_config)
  scheduler.set_timesteps(DDIM_STEPS)
  x = torch.from_numpy(nchw(x_t))
  for t in scheduler.timesteps:
    with torch.no_grad():
      x = scheduler.step(unet(x, t).sample, t, x, eta=eta, use_clipped_model_output=True,
                         variance_noise=torch.from_numpy(nchw(noise[int(t)]))).prev_sample
  return nhwc(x.numpy()), [int(t) for t in scheduler.timesteps]


def make_fixture(name, spec, tmp):
  import diffusers  # pylint: disable=g-import-not-at-top
  folder = os.path.join(OUT, name)
  unet = make_unet(spec['unet'], seed=len(name), family=spec.get('family'))
  scheduler = diffusers.DDPMScheduler(**spec['scheduler'])
  if spec['layout'] == 'pipeline':
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder)
  else:
    unet.save_pretrained(folder)
    scheduler.save_pretrained(folder)
  size, channels = spec['unet']['sample_size'], spec['unet']['in_channels']
  shape = (BATCH, size, size, channels)
  rs = np.random.RandomState(0)
  x = rs.randn(len(TIMESTEPS), size, size, channels).astype(np.float32)
  expected = {'x': x, 't': np.asarray(TIMESTEPS, np.int64), 'out': unet_out(unet, x, TIMESTEPS)}
  noise_path = os.path.join(tmp, f'{name}_noise.npz')
  gen_jax('noise', noise_path, json.dumps(shape), str(spec['scheduler']['num_train_timesteps']))
  config = dict(scheduler.config)
  with np.load(noise_path) as noise:
    expected['ddpm'] = run_ddpm(unet, config, noise['ddpm/x_T'], noise['ddpm/noise'])
    for eta in (0, 0.5):
      key = f'ddim_eta{eta:g}'
      expected[key], timesteps = run_ddim(unet, config, noise[f'{key}/x_T'],
                                          noise[f'{key}/noise'], eta)
  expected['ddim_timesteps'] = np.asarray(timesteps, np.int64)
  np.savez_compressed(os.path.join(folder, 'expected.npz'), **expected)
  n = sum(p.numel() for p in unet.parameters())
  print(f'{name}: {n:,} parameters, {spec["layout"]} folder; DDIM timesteps {timesteps}')
  return unet, expected


def make_legacy_bin():
  """cifar_like's weights as a torch .bin with the old attention names (cifar_like_bin/)."""
  import shutil  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top
  source, folder = os.path.join(OUT, 'cifar_like'), os.path.join(OUT, 'cifar_like_bin')
  os.makedirs(folder, exist_ok=True)
  for name in ('config.json', 'scheduler_config.json'):
    shutil.copy(os.path.join(source, name), folder)
  state_dict = diffusers.UNet2DModel.from_pretrained(source).state_dict()
  legacy = {}
  for key, value in state_dict.items():
    for new, old in (('to_q', 'query'), ('to_k', 'key'), ('to_v', 'value'),
                     ('to_out.0', 'proj_attn')):
      key = key.replace(f'.{new}.', f'.{old}.')
    legacy[key] = value.clone()
  torch.save(legacy, os.path.join(folder, 'diffusion_pytorch_model.bin'))
  # diffusers itself reads it back (renaming the attention weights) to the same outputs.
  loaded = diffusers.UNet2DModel.from_pretrained(folder).eval()
  with np.load(os.path.join(source, 'expected.npz')) as e:
    diff = np.max(np.abs(unet_out(loaded, e['x'], TIMESTEPS) - e['out']))
  print(f'cifar_like_bin: legacy names, torch .bin; diffusers reads it to max abs diff {diff}')


def check_export(unet, expected, tmp):
  """Import cifar_like into gen_jax, export it, and load the export with diffusers."""
  import torch  # pylint: disable=g-import-not-at-top
  import diffusers  # pylint: disable=g-import-not-at-top
  workdir, export = os.path.join(tmp, 'imported'), os.path.join(tmp, 'export')
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  for command in (['-m', 'experiments.import_diffusers', f'--source={OUT}/cifar_like',
                   f'--workdir={workdir}'],
                  ['-m', 'experiments.export_diffusers', f'--workdir={workdir}',
                   f'--out={export}']):
    subprocess.run([GEN_JAX_PYTHON, *command], check=True, env=env, cwd=REPO)
  loaded = diffusers.UNet2DModel.from_pretrained(export).eval()
  pipeline = diffusers.DDPMPipeline.from_pretrained(export)
  original_sd, loaded_sd = unet.state_dict(), loaded.state_dict()
  same_weights = (set(original_sd) == set(loaded_sd) and
                  all(torch.equal(original_sd[k], loaded_sd[k]) for k in original_sd))
  out = unet_out(loaded, expected['x'], TIMESTEPS)
  pipe_out = unet_out(pipeline.unet.eval(), expected['x'], TIMESTEPS)
  sched = pipeline.scheduler.config
  original_sched = MODELS['cifar_like']['scheduler']
  result = {
      'exported_from': ('tests/data/diffusers/cifar_like, imported by '
                        'experiments/import_diffusers.py, exported by '
                        'experiments/export_diffusers.py'),
      'UNet2DModel.from_pretrained': 'loaded', 'DDPMPipeline.from_pretrained': 'loaded',
      'pipeline_scheduler_class': type(pipeline.scheduler).__name__,
      'scheduler_fields_equal': all(sched[k] == v for k, v in original_sched.items()),
      'state_dict_bit_equal': bool(same_weights),
      'unet_max_abs_diff': float(np.max(np.abs(out - expected['out']))),
      'pipeline_unet_max_abs_diff': float(np.max(np.abs(pipe_out - expected['out']))),
  }
  with open(os.path.join(OUT, 'export_check.json'), 'w') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  print('export check:', json.dumps(result))


def check_full_cifar10(tmp):
  import diffusers  # pylint: disable=g-import-not-at-top
  folder = os.path.join(tmp, 'ddpm_cifar10_random')
  unet = make_unet(GOOGLE_CIFAR10, seed=0)
  unet.save_pretrained(folder)
  diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', beta_start=1e-4,
                          beta_end=0.02, variance_type='fixed_large',
                          clip_sample=True).save_pretrained(folder)
  x = np.random.RandomState(1).randn(2, 32, 32, 3).astype(np.float32)
  t = np.asarray([10, 900], np.int64)
  reference = unet_out(unet, x, t)
  inputs, outputs = os.path.join(tmp, 'in.npz'), os.path.join(tmp, 'out.npz')
  np.savez(inputs, x=x, t=t)
  workdir = os.path.join(tmp, 'cifar10_run')
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS='cpu')
  subprocess.run([GEN_JAX_PYTHON, '-m', 'experiments.import_diffusers', f'--source={folder}',
                  f'--workdir={workdir}', '--config=configs/ddpm_cifar10.py'], check=True,
                 env=env, cwd=REPO)
  gen_jax('outputs', outputs, workdir, inputs)
  with open(os.path.join(workdir, 'imported.json')) as f:
    overrides = json.load(f)['launch_overrides']
  with np.load(outputs) as data:
    ours = data['out']
  result = {'architecture': 'google/ddpm-cifar10-32 (UNet2DModel, random weights)',
            'parameters': sum(p.numel() for p in unet.parameters()),
            'inputs': 'x ~ N(0, 1) (2, 32, 32, 3), t = (10, 900)',
            'max_rel_err': rel_err(ours, reference),
            'max_abs_err': float(np.max(np.abs(ours - reference))),
            'launch_overrides_vs_configs/ddpm_cifar10.py': overrides}
  with open(os.path.join(OUT, 'full_cifar10_check.json'), 'w') as f:
    json.dump(result, f, indent=2)
    f.write('\n')
  print('full cifar10 check:', json.dumps(result))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  args = flags.FLAGS
  os.makedirs(OUT, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    if args.export_check:
      import diffusers  # pylint: disable=g-import-not-at-top
      unet = diffusers.UNet2DModel.from_pretrained(os.path.join(OUT, 'cifar_like')).eval()
      with np.load(os.path.join(OUT, 'cifar_like', 'expected.npz')) as e:
        check_export(unet, {k: e[k] for k in e.files}, tmp)
      return
    if args.only:
      make_fixture(args.only, MODELS[args.only], tmp)
      return
    if args.full_cifar10 or args.legacy_bin:
      check_full_cifar10(tmp) if args.full_cifar10 else make_legacy_bin()
      return
    made = {name: make_fixture(name, spec, tmp) for name, spec in MODELS.items()}
    make_legacy_bin()
    check_export(*made['cifar_like'], tmp)
  total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
  print(f'{OUT}: {total / 1024:.0f} KiB')


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == '--jax':  # the gen_jax half: not absl flags
    jax_main(sys.argv[2:])
  else:
    app.run(main)
