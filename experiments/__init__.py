"""The application: one package per family, the evaluation program (evaluation.py) and
what `launch.py` runs (programs.py).

A family is the package `experiments/<name>/` (name = `config.family`) with the same faces:
`experiment.py` (its `gen_jax.core.family.Experiment` subclass, exported as `EXPERIMENT`),
`schema.py` (`get_schema()`, and the tables `RESUMABLE_FIELDS`, `RENAMED`,
`DROPPED_WITH_RENAMES`, `HISTORICAL_DEFAULTS`), `checks.py` (`validate(config)`) and a
README.md. The registry finds it by name: a package here with an experiment.py is a family.
The blocks every family shares, and their tables, are `experiments/schema.py`.

`build(config, mesh)` returns the family's Experiment; `load_run(workdir)` a trained run's
experiment and latest state, without loading its data (VAEs for latent diffusion,
classifiers for evaluation); `upgrade_config` reads an old config.json as today's code does.
Nothing in `gen_jax` imports this package.
"""

import importlib
import json
import os

import ml_collections

from experiments import schema as shared_schema
from gen_jax.core import family
from gen_jax.platform import run_config
from gen_jax.platform.errors import UserError

_HERE = os.path.dirname(os.path.abspath(__file__))

# The families: every package in experiments/ with an experiment.py, by name.
FAMILIES = tuple(sorted(
    name for name in os.listdir(_HERE)
    if os.path.isfile(os.path.join(_HERE, name, 'experiment.py'))
    and os.path.isfile(os.path.join(_HERE, name, '__init__.py'))))


def family_schema(name: str):
  """The schema module of family `name` (experiments/<name>/schema.py)."""
  return importlib.import_module(f'experiments.{name}.schema')


def experiment_class(name: str):
  """The Experiment class of family `name`: `EXPERIMENT` of experiments/<name>/experiment.py
  (imported on demand)."""
  return importlib.import_module(f'experiments.{name}.experiment').EXPERIMENT


def renamed_fields() -> dict[str, str]:
  """Every renamed field {old: new}: the shared blocks' and every family's (for the hint
  when a command line names an old field, launch.py)."""
  renamed = dict(shared_schema.RENAMED)
  for name in FAMILIES:
    renamed.update(family_schema(name).RENAMED)
  return renamed


def upgrade_config(recorded: dict) -> dict:
  """A run's config.json as today's code reads it: renamed fields under their new names,
  fields added since completed with the values the run behaved as (the shared and the
  family's `HISTORICAL_DEFAULTS`)."""
  name = recorded.get('family', '')
  tables = family_schema(name) if name in FAMILIES else None
  renamed = {**shared_schema.RENAMED, **(tables.RENAMED if tables else {})}
  upgraded = run_config.upgrade(recorded, renamed,
                                tables.DROPPED_WITH_RENAMES if tables else ())
  defaults = {**shared_schema.HISTORICAL_DEFAULTS,
              **(tables.HISTORICAL_DEFAULTS if tables else {})}
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
                    f'known: {", ".join(FAMILIES)}.')
  cls = experiment_class(config.family)
  problem = family.contract_problem(cls)
  if problem:
    raise UserError(f'family {config.family!r} (experiments.{config.family}.experiment.'
                    f'EXPERIMENT) cannot be built: {problem}.')
  return cls(config, mesh)


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
  experiment = experiment_class(family_name).from_saved_shapes(config, mesh, shapes)
  state = trainer.restore_latest(experiment, os.path.abspath(workdir))
  return config, experiment, state
