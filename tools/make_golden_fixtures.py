"""Writes tests/data/golden/: what the tree of the commit that ran it does, for
tests/test_golden.py to hold every later commit to (a redesign must be behaviour-neutral).

    python tools/make_golden_fixtures.py            # from the repository root

It records, from the tree it runs in:
- configs.json: every configs/*.py resolved to JSON;
- state_trees.json: each family's train-state tree (path, shape, dtype) for its configs;
- workdirs/<name>/: a tiny 5-step launch.py run of each family on one device (its config.json
  and checkpoints; the test samples from them with the new tree), the .npz its
  `--mode=sample` wrote, and the train metrics of that run and of the same run on 8
  devices (runs.json: the command lines);
- old_configs.json: config.json files of older runs (each family's without the fields
  added since, a GAN from before the renames, one without data.loader) and the values the
  code's historical fallbacks (`config.x.get(field, default)`, listed in _FALLBACKS and
  checked against the source) gave for them.

Run it once, on the tree whose behaviour is the reference; never on a tree under test. It
was run on the commit that added it (the tree before the layered layout; its imports and
_FALLBACKS name that tree's modules): `git worktree add /tmp/golden <that commit>` and run
it there to remake the fixtures.
"""

import glob
import importlib
import json
import os
import re
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, 'tests', 'data', 'golden')

_TINY_SHARED = ['--config.training.batch_size=16', '--config.training.log_every=1',
                '--config.training.sample_every=0', '--config.training.async_checkpoints=False',
                '--config.training.num_steps=5', '--config.sampling.num_samples=8']
# name -> launch.py arguments of a tiny 5-step run ({golden}: the workdirs' folder).
RUNS = {
    'ddpm': ['--config=configs/ddpm.py', '--config.data.image_size=8',
             '--config.eval.image_size=0', '--config.model.ch=8', '--config.model.ch_mult=(1,2)',
             '--config.model.attn_resolutions=(4,)', '--config.model.num_groups=4',
             '--config.diffusion.num_timesteps=20', '--config.optim.warmup_steps=2',
             *_TINY_SHARED],
    'vae': ['--config=configs/vae.py', '--config.data.image_size=8',
            '--config.eval.image_size=0', '--config.model.features=(8,)',
            '--config.model.hidden=16', '--config.training.eval_every=0',
            '--config.optim.warmup_steps=2', '--config.vae.iwae_samples=4',
            '--config.sampling.num_recon=8', '--config.sampling.manifold_size=4', *_TINY_SHARED],
    'vae_spatial': ['--config=configs/vae_spatial.py', '--config.data.image_size=8',
                    '--config.model.features=(8,)', '--config.model.hidden=16',
                    '--config.vae.latent_shape=(4,4,2)', '--config.vae.iwae_samples=2',
                    '--config.training.eval_every=0', *_TINY_SHARED],
    'ldm': ['--config=configs/ldm.py', '--config.model.ch=8', '--config.model.ch_mult=(1,2)',
            '--config.model.num_res_blocks=1', '--config.model.attn_resolutions=()',
            '--config.model.num_groups=4', '--config.diffusion.num_timesteps=20',
            '--config.sampling.num_steps=5', '--config.ldm.autoencoder_workdir={golden}/vae_spatial',
            *_TINY_SHARED],
    'dcgan': ['--config=configs/dcgan.py', '--config.data.image_size=8', '--config.model.z_dim=8',
              '--config.model.g_ch=8', '--config.model.d_ch=8', '--config.gan.interp_rows=2',
              '--config.gan.interp_steps=4', '--config.gan.cluster_classes=4', *_TINY_SHARED],
    'biggan': ['--config=configs/biggan.py', '--config.data.image_size=8', '--config.model.z_dim=8',
               '--config.model.g_ch=4', '--config.model.g_ch_mults=(2,)',
               '--config.model.shared_dim=4', '--config.model.g_attn=4', '--config.model.d_ch=4',
               '--config.model.d_ch_mults=(2,2)', '--config.model.d_num_down=1',
               '--config.model.d_attn=4', '--config.gan.interp_rows=2',
               '--config.gan.interp_steps=4', '--config.optim.ema_start=3',
               '--config.gan.standing_batches=2', *_TINY_SHARED, '--config.sampling.num_samples=16'],
    'classifier': ['--config=configs/classifier_digits.py', '--config.data.image_size=8',
                   '--config.model.features=(16,32)', '--config.model.feature_dim=32',
                   '--config.model.num_groups=4', '--config.training.eval_every=0',
                   *_TINY_SHARED],
}

# The configs whose train-state tree is recorded (the ones that train on the embedded
# digits, so building them loads nothing from the network).
STATE_TREE_CONFIGS = ['ddpm', 'ddim', 'ddpm_cond', 'vae', 'vae_spatial', 'dcgan',
                      'cgan', 'biggan', 'gan_ring', 'classifier_digits', 'ldm']

# Metrics that are not the computation's (wall-clock rates).
_TIMING = re.compile(r'steps_per_s|seconds|_time$|eta')

# (block, field, default, file): the historical fallbacks of the tree, each written in that
# file as `.get('field', default)` (checked below, so the list cannot drift from the code).
_FALLBACKS = [
    ('data', 'on_bad_image', 'fail', 'gen_jax/data/datasets.py'),
    ('data', 'loader', 'memory', 'gen_jax/data/datasets.py'),
    ('data', 'crop', 'center', 'gen_jax/data/datasets.py'),
    ('data', 'max_memory_bytes', 4 * 2**30, 'gen_jax/data/datasets.py'),
    ('data', 'labels_from_subfolders', False, 'gen_jax/data/datasets.py'),
    ('data', 'num_workers', 0, 'gen_jax/data/datasets.py'),
    ('data', 'prefetch_batches', 4, 'gen_jax/data/datasets.py'),
    ('data', 'resize', 'bilinear', 'gen_jax/data/grain_records.py'),
    ('parallel', 'peer_timeout_s', 30, 'gen_jax/platform/runner.py'),
    ('parallel', 'init_timeout_s', 300, 'gen_jax/platform/runner.py'),
    ('eval', 'samples_file', '', 'gen_jax/platform/runner.py'),
    ('eval', 'image_size', 0, 'experiments/evaluation.py'),
    ('training', 'eval_every', 0, 'gen_jax/core/trainer.py'),
    ('sweep', 'vmap_trial_devices', 0, 'gen_jax/core/vmap_trials.py'),
    ('sampling', 'dynamic_threshold', 0.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 'threshold_max', 0.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 'sigma_schedule', 'model', 'gen_jax/diffusion/samplers.py'),
    ('sampling', 'rho', 7.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 'sigma_min', 0.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 'sigma_max', 0.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 's_churn', 0.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 's_tmin', 0.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 's_noise', 1.0, 'gen_jax/diffusion/samplers.py'),
    ('sampling', 'spacing', 'uniform', 'experiments/diffusion.py'),
    ('model', 'dtype', 'float32', 'experiments/diffusion.py'),
]
# Blocks of a fallback field by family: the diffusion-only fields only in diffusion runs.
_DIFFUSION_ONLY = {('sampling', f) for f in ('dynamic_threshold', 'threshold_max',
                                             'sigma_schedule', 'rho', 'sigma_min', 'sigma_max',
                                             's_churn', 's_tmin', 's_noise', 'spacing')}
_DIFFUSION_ONLY.add(('model', 'dtype'))


def _env(devices: int) -> dict:
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='3',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return env


def _launch(args, devices: int) -> None:
  subprocess.run([sys.executable, os.path.join(REPO, 'launch.py'), *args], cwd=REPO,
                 env=_env(devices), check=True, capture_output=True, text=True)


def train_metrics(workdir: str) -> list[dict]:
  """The train lines of WORKDIR/metrics.jsonl without wall-clock rates."""
  lines = []
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if any(k.startswith('train/') for k in record):
        lines.append({k: v for k, v in record.items() if not _TIMING.search(k)})
  return lines


def config_json(name: str) -> dict:
  module = importlib.import_module(f'configs.{name}')
  return json.loads(module.get_config().to_json_best_effort(sort_keys=True))


def write_configs() -> None:
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                 if not p.endswith(('__init__.py', 'base.py')))
  with open(os.path.join(OUT, 'configs.json'), 'w') as f:
    json.dump({name: config_json(name) for name in names}, f, indent=1, sort_keys=True)


def write_state_trees(runs_dir: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import experiments  # pylint: disable=g-import-not-at-top
  from gen_jax.core import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  trees = {}
  for name in STATE_TREE_CONFIGS:
    config = ml_collections.ConfigDict(config_json(name))
    if name == 'ldm':
      config.ldm.autoencoder_workdir = os.path.join(runs_dir, 'vae_spatial')
      config.data.image_size = 8  # the tiny VAE's
    experiment = experiments.build(config, mesh)
    shapes = jax.eval_shape(experiment.init_state, jax.random.key(0))
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    trees[name] = [[jax.tree_util.keystr(path), list(leaf.shape), str(leaf.dtype)]
                   for path, leaf in leaves]
  with open(os.path.join(OUT, 'state_trees.json'), 'w') as f:
    json.dump(trees, f, indent=1)


def write_runs(runs_dir: str) -> None:
  metrics = {}
  for name, args in RUNS.items():
    args = [a.replace('{golden}', runs_dir) for a in args]
    workdir = os.path.join(runs_dir, name)
    shutil.rmtree(workdir, ignore_errors=True)
    metrics[name] = {}
    for devices in (8, 1):  # the 1-device run is the one kept
      shutil.rmtree(workdir, ignore_errors=True)
      _launch([*args, f'--workdir={workdir}'], devices)
      metrics[name][str(devices)] = train_metrics(workdir)
    _launch([*args, f'--workdir={workdir}', '--mode=sample'], 1)
    for extra in ('tensorboard', 'metrics.jsonl', '.lock', 'logs', 'config_history.jsonl'):
      path = os.path.join(workdir, extra)
      shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else (
          os.path.exists(path) and os.remove(path))
    for png in glob.glob(os.path.join(workdir, 'samples', '*.png')):
      os.remove(png)
  with open(os.path.join(OUT, 'runs.json'), 'w') as f:
    json.dump({'args': RUNS, 'metrics': metrics}, f, indent=1)


def _check_fallbacks() -> None:
  """Each listed fallback is in its file as `.get('field', default)`."""
  for _, field, default, path in _FALLBACKS:
    with open(os.path.join(REPO, path)) as f:
      source = f.read()
    written = '4 * 2**30' if field == 'max_memory_bytes' else repr(default)
    if f".get('{field}', {written})" not in source:
      raise SystemExit(f"{path} has no .get('{field}', {written}): update _FALLBACKS")


def write_old_configs(runs_dir: str) -> None:
  """Old config.json files and the values the historical fallbacks gave for them."""
  _check_fallbacks()
  cases = {}
  for name in ('ddpm', 'vae', 'dcgan', 'biggan', 'classifier', 'ldm'):
    with open(os.path.join(runs_dir, name, 'config.json')) as f:
      recorded = json.load(f)
    for block, field, _, _ in _FALLBACKS:  # written before those fields existed
      recorded.get(block, {}).pop(field, None)
    cases[f'{name}_without_later_fields'] = recorded
  with open(os.path.join(runs_dir, 'dcgan', 'config.json')) as f:
    gan = json.load(f)
  gan['gan'].update(g_lr=gan['optim'].pop('g_lr'), d_lr=gan['optim'].pop('d_lr'),
                    ema_decay=gan['optim'].pop('ema_decay'),
                    ema_start=gan['optim'].pop('ema_start'))
  gan['optim']['lr'] = 2e-4  # unused by the GAN then; dropped by the upgrade
  cases['gan_before_renames'] = gan
  with open(os.path.join(runs_dir, 'ddpm', 'config.json')) as f:
    ddpm = json.load(f)
  ddpm['data'].pop('loader')
  cases['ddpm_without_data_loader'] = ddpm

  expected = {}
  for case, recorded in cases.items():
    values = {}
    diffusion = recorded['family'] in ('diffusion', 'ldm')
    for block, field, default, _ in _FALLBACKS:
      if (block, field) in _DIFFUSION_ONLY and not diffusion:
        continue
      values[f'{block}.{field}'] = recorded.get(block, {}).get(field, default)
    if case == 'gan_before_renames':
      for field in ('g_lr', 'd_lr', 'ema_decay', 'ema_start'):
        values[f'optim.{field}'] = gan['gan'][field]
    expected[case] = values
  with open(os.path.join(OUT, 'old_configs.json'), 'w') as f:
    json.dump({'recorded': cases, 'expected': expected}, f, indent=1, sort_keys=True)


def main() -> None:
  sys.path.insert(0, REPO)  # this script imports configs.* and experiments
  os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=1')
  os.makedirs(OUT, exist_ok=True)
  runs_dir = os.path.join(OUT, 'workdirs')
  write_configs()
  write_runs(runs_dir)
  write_state_trees(runs_dir)
  write_old_configs(runs_dir)
  print(f'wrote {OUT}')


if __name__ == '__main__':
  main()
