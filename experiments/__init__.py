"""The application: one module per family, each a `gen_jax.core.family.Experiment`, the
evaluation program (evaluation.py) and what `launch.py` runs (programs.py).

`build(config, mesh)` returns the family's Experiment; `load_run(workdir)` a trained run's
experiment and latest state, without loading its data (VAEs for latent diffusion,
classifiers for evaluation). Nothing in `gen_jax` imports this package.
"""

import importlib
import json
import os

import ml_collections

from gen_jax.core import family
from gen_jax.platform import run_config
from gen_jax.platform.errors import UserError

# config.family -> 'module:ExperimentClass' (imported on demand).
FAMILIES = {
    'diffusion': 'experiments.diffusion:DiffusionExperiment',
    'vae': 'experiments.vae:VAEExperiment',
    'gan': 'experiments.gan:GANExperiment',
    'ldm': 'experiments.ldm:LatentDiffusionExperiment',
    'classifier': 'experiments.classifier:ClassifierExperiment',
}


# Fields added after runs were recorded without them: the value such a run behaved as (its
# config.json is completed with it when read back). Shared blocks, then by family.
_HISTORICAL_DEFAULTS = {
    'data.on_bad_image': 'fail', 'data.loader': 'memory', 'data.crop': 'center',
    'data.max_memory_bytes': 4 * 2**30, 'data.labels_from_subfolders': False,
    'data.num_workers': 0, 'data.prefetch_batches': 4, 'data.resize': 'bilinear',
    'parallel.peer_timeout_s': 30, 'parallel.init_timeout_s': 300, 'eval.samples_file': '',
    'eval.image_size': 0, 'training.eval_every': 0, 'sweep.vmap_trial_devices': 0,
}
_DIFFUSION_HISTORICAL_DEFAULTS = {
    'sampling.dynamic_threshold': 0.0, 'sampling.threshold_max': 0.0,
    'sampling.sigma_schedule': 'model', 'sampling.rho': 7.0, 'sampling.sigma_min': 0.0,
    'sampling.sigma_max': 0.0, 'sampling.s_churn': 0.0, 'sampling.s_tmin': 0.0,
    'sampling.s_noise': 1.0, 'sampling.spacing': 'uniform', 'model.dtype': 'float32',
}
_FAMILY_HISTORICAL_DEFAULTS = {'diffusion': _DIFFUSION_HISTORICAL_DEFAULTS,
                               'ldm': _DIFFUSION_HISTORICAL_DEFAULTS}


def upgrade_config(recorded: dict) -> dict:
  """A run's config.json as today's code reads it: renamed fields under their new names,
  fields added since completed with the values the run behaved as."""
  upgraded = run_config.upgrade(recorded)
  defaults = {**_HISTORICAL_DEFAULTS,
              **_FAMILY_HISTORICAL_DEFAULTS.get(upgraded.get('family', ''), {})}
  return run_config.complete(upgraded, defaults)


def scoring_mesh(config, args):
  """The shared start of the scoring commands (experiments.quality_curve,
  experiments.sampler_quality, experiments.truncation), before anything touches a device.

  Checks --num_samples / --batch_size (`args`: the flags' values), points `config.eval` at
  --classifier_workdir, --cache_dir and the batch size, starts the devices
  (`runner.setup_devices`) and returns the one-axis mesh the batch divides over.
  """
  from gen_jax.platform import runner  # pylint: disable=g-import-not-at-top
  if args.num_samples < 1 or args.batch_size < 1 or args.num_samples % args.batch_size:
    raise UserError(f'--num_samples={args.num_samples} must be a positive multiple of '
                    f'--batch_size={args.batch_size}.')
  if args.classifier_workdir:
    config.eval.classifier_workdir = os.path.abspath(args.classifier_workdir)
  if args.cache_dir is not None:
    config.eval.cache_dir = args.cache_dir
  config.eval.batch_size = args.batch_size
  runner.setup_devices(config)
  from gen_jax.core import parallel  # pylint: disable=g-import-not-at-top  # after setup_devices
  mesh = parallel.make_mesh()
  parallel.check_divisible(args.batch_size, '--batch_size', mesh)
  return mesh


def build(config, mesh):
  """The Experiment of `config.family`, on `mesh`.

  Raises:
    UserError: an unknown family, or a family class lacking a required hook (one line,
      before anything is loaded).
  """
  if config.family not in FAMILIES:
    raise UserError(f'unknown family {config.family!r} in the config; '
                    f'known: {", ".join(sorted(FAMILIES))}.')
  cls = _family_class(config.family)
  problem = family.contract_problem(cls)
  if problem:
    raise UserError(f'family {config.family!r} ({FAMILIES[config.family]}) cannot be built: '
                    f'{problem}.')
  return cls(config, mesh)


def _family_class(name: str):
  """The class `FAMILIES[name]` names (its module imported on demand)."""
  module_name, class_name = FAMILIES[name].split(':')
  return getattr(importlib.import_module(module_name), class_name)


def read_run_config(workdir: str, family: str, field: str = '--workdir', hint: str = ''):
  """The config of the gen_jax run of `family` in `workdir` (its config.json).

  Args:
    workdir: the run's directory.
    family: the family the run must be.
    field: the flag or config field that named `workdir` (for error messages).
    hint: what to do when there is no run there (appended to that error).
  Raises:
    UserError: no config.json there, or a run of another family.
  """
  config_path = os.path.join(os.path.abspath(workdir or '.'), 'config.json')
  if not workdir or not os.path.exists(config_path):
    raise UserError(f'{field}={workdir!r} is not a gen_jax run (no config.json)'
                    + (f'; {hint}.' if hint else '.'))
  with open(config_path) as f:
    config = ml_collections.ConfigDict(upgrade_config(json.load(f)))
  if config.family != family:
    raise UserError(f'{field}={workdir!r} is a {config.family!r} run, not a {family!r} one.')
  return config


def load_run(workdir: str, mesh, family_name: str, field: str, train_hint: str):
  """A finished gen_jax run of `family_name`: (config, experiment, latest state).

  The experiment is built from the checkpoint's parameter shapes (the family's
  `from_saved_shapes`: VAEs and classifiers), so no data is loaded to get at the
  parameters.

  Args:
    workdir: the run's directory (holding config.json and checkpoints/).
    mesh: the device mesh to build its experiment on.
    family_name: the family the run must be ('vae' or 'classifier').
    field: the config field that named `workdir` (for error messages).
    train_hint: the command that trains such a run (for error messages).
  Raises:
    UserError: no run there, a run of another family, or no checkpoint.
  """
  from gen_jax.platform import checkpoint  # pylint: disable=g-import-not-at-top
  from gen_jax.core import trainer  # pylint: disable=g-import-not-at-top
  config = read_run_config(workdir, family_name, field,
                           hint=f'train a {family_name} run first: {train_hint}')
  ckpt = checkpoint.Checkpointer(os.path.abspath(workdir), async_save=False)
  try:
    shapes = ckpt.saved_shapes()  # one-line error when there is no checkpoint
  finally:
    ckpt.close()
  experiment = _family_class(family_name).from_saved_shapes(config, mesh, shapes)
  state = trainer.restore_latest(experiment, os.path.abspath(workdir))
  return config, experiment, state
