"""Imports a diffusers `UNet2DModel` checkpoint as an ordinary gen_jax diffusion workdir.

    python -m experiments.import_diffusers --source=DIR_OR_HUB_ID --workdir=RUN \
        [--config=configs/ddpm_cifar10.py] [--revision=REV]

--source is a local folder in either hub layout (a pipeline folder: model_index.json,
unet/, scheduler/; or a model folder: config.json, the weights, scheduler_config.json), or
a hub id such as google/ddpm-cifar10-32 (needs the `hub` extra and the network).

Writes RUN/config.json (the --config file's fields, with the model and diffusion fields
mapped from the checkpoint), a step-0 checkpoint whose params and EMA params are the
imported weights, and RUN/imported.json (source, revision, sha256 of every file read, the
diffusers configs, and the launch.py overrides that rebuild this config from --config).
`launch.py --mode=sample|eval|train` then works on RUN as on any run; the ledger marks its
rows as imported. Exit code 2 and one line on stderr for anything that cannot be mapped.
"""

import datetime
import json
import os
import shlex

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from gen_jax.core import parallel
from gen_jax.core.train_state import TrainState
from gen_jax.interop import diffusers_unet
from gen_jax.platform import checkpoint
from gen_jax.platform import run_config
from gen_jax.platform.errors import UserError

IMPORTED = 'imported.json'  # the record of where an imported run's weights came from


def _get(config, dotted: str):
  for part in dotted.split('.'):
    config = config[part]
  return config


def _set(config, dotted: str, value) -> None:
  *parents, leaf = dotted.split('.')
  for part in parents:
    config = config[part]
  config[leaf] = value


def _flag_value(value) -> str:
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(str(v) for v in value) + (',)' if len(value) == 1 else ')')
  return str(value)


def _same(a, b) -> bool:
  if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
    return list(a) == list(b)
  return a == b


def resolve_source(source: str, revision: str | None) -> tuple[str, str | None]:
  """(local folder, hub revision or None): a folder as it is, a hub id downloaded."""
  if os.path.isdir(source):
    return source, None
  looks_like_id = source.count('/') == 1 and not source.startswith(('.', '/', '~'))
  if not looks_like_id:
    raise UserError(f'--source={source} is neither a folder nor a hub id (owner/name).')
  return diffusers_unet.hub_snapshot(source, revision)


def import_checkpoint(source: str, workdir: str, config_file: str = 'configs/ddpm.py',
                      revision: str | None = None) -> dict:
  """Writes `workdir` from a diffusers checkpoint; returns the imported.json record.

  Raises:
    UserError: a bad source, an unmappable checkpoint, or a workdir that already holds
      checkpoints (nothing is overwritten).
  """
  from experiments.diffusion import experiment as diffusion  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  if os.path.isdir(os.path.join(workdir, 'checkpoints')) and os.listdir(
      os.path.join(workdir, 'checkpoints')):
    raise UserError(f'{workdir} already holds checkpoints; import into a new --workdir.')
  folder, revision = resolve_source(source, revision)
  contents = diffusers_unet.read_folder(folder)
  spec = diffusers_unet.spec_from_diffusers_config(contents.unet_config)
  fields = dict(spec.config_fields())
  fields.update(diffusers_unet.fields_from_scheduler_config(contents.scheduler_config))

  config = cli.load_config_file(config_file)
  if config.family != 'diffusion':
    raise UserError(f'--config={config_file} is a {config.family!r} config; give a diffusion '
                    f'one (e.g. configs/ddpm_cifar10.py).')
  if config.diffusion.class_conditional:
    raise UserError(f'--config={config_file} is class-conditional; UNet2DModel checkpoints '
                    f'are imported as unconditional networks.')
  overrides = []
  for field, value in fields.items():
    if not _same(_get(config, field), value):
      overrides.append(f'--config.{field}={_flag_value(value)}')
    _set(config, field, value)

  mesh = parallel.make_mesh()
  experiment = diffusion.DiffusionExperiment(
      config, mesh, image_shape=(spec.image_size, spec.image_size, spec.channels))
  params = diffusers_unet.params_from_state_dict(contents.state_dict, spec)
  wanted = jax.eval_shape(experiment.init_params, jax.random.PRNGKey(0))
  got = jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), params)
  if jax.tree.map(lambda x: (x.shape, np.dtype(x.dtype)), wanted) != got:
    raise UserError(f'the imported weights do not fit the U-Net of {config_file} with the '
                    f'mapped fields; this is a bug in gen_jax/interop/diffusers_unet.py.')
  params = jax.tree.map(jnp.asarray, params)
  state = TrainState(step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(config.seed),
                     params=params, opt_state=experiment.optimizer.init(params),
                     ema_params=params)

  os.makedirs(workdir, exist_ok=True)
  run_config.write(config, workdir, step=0, changed={})
  ckpt = checkpoint.Checkpointer(workdir, keep=config.training.keep_checkpoints,
                                 async_save=False)
  try:
    ckpt.save(0, state)
    ckpt.wait()
  finally:
    ckpt.close()

  record = {
      'source': source, 'revision': revision, 'layout': contents.layout,
      'files_sha256': contents.files, 'config_file': config_file, 'mapped_fields': fields,
      'num_parameters': sum(int(np.size(v)) for v in contents.state_dict.values()),
      'launch_overrides': overrides, 'diffusers_unet_config': contents.unet_config,
      'diffusers_scheduler_config': contents.scheduler_config,
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }
  with open(os.path.join(workdir, IMPORTED), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True, default=str)
    f.write('\n')
  return record


def define_flags():
  flags.DEFINE_string('source', None, 'Diffusers folder or hub id.', required=True)
  flags.DEFINE_string('workdir', None, 'The gen_jax run directory to write.', required=True)
  flags.DEFINE_string('config', 'configs/ddpm.py',
                      'Diffusion config file (a path, FILE or FILE:ARG as launch.py takes) '
                      'whose other fields the run takes.')
  flags.DEFINE_string('revision', None, 'Hub revision (hub ids only).')


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  args = cli.flag_values('source', 'workdir', 'config', 'revision')
  record = import_checkpoint(args.source, args.workdir, args.config,
                             args.revision)  # UserError: cli.run
  launch = ' '.join(shlex.quote(a) for a in [  # (8,) needs quotes in a shell
      'python', 'launch.py', f'--config={args.config}', f'--workdir={args.workdir}',
      *record['launch_overrides']])
  print(f'imported {args.source} ({record["layout"]} folder, '
        f'{record["num_parameters"]:,} parameters) into {args.workdir}\n'
        f'  sample: {launch} --mode=sample\n  eval:   {launch} --mode=eval')


def run():
  """The console script gen-jax-import-diffusers."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
