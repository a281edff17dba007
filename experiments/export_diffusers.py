"""Exports a gen_jax diffusion run as a diffusers `UNet2DModel` + `DDPMScheduler` folder.

    python -m experiments.export_diffusers --workdir=RUN --out=DIR [--raw]

DIR gets config.json, diffusion_pytorch_model.safetensors (the EMA parameters of the
latest checkpoint; --raw: the trained ones), scheduler_config.json and model_index.json,
so that both `diffusers.UNet2DModel.from_pretrained(DIR)` and
`diffusers.DDPMPipeline.from_pretrained(DIR)` load it. A U-Net that UNet2DModel cannot
express (class-conditional, pooling resamplers) is refused with one line, exit code 2.
"""

import os

from absl import flags
import jax
import numpy as np

import experiments
from experiments import cli
from gen_jax.core import parallel
from gen_jax.core import trainer
from gen_jax.interop import diffusers_unet
from gen_jax.platform import checkpoint
from gen_jax.platform.errors import UserError

_OURS = {diffusers_unet.MODEL_CONFIG, diffusers_unet.SCHEDULER_CONFIG,
         diffusers_unet.PIPELINE_INDEX, diffusers_unet.WEIGHTS_SAFETENSORS}


def export_run(workdir: str, out: str, ema: bool = True) -> list[str]:
  """Writes `out` from the latest checkpoint of `workdir`; returns the files written.

  Raises:
    UserError: no diffusion run there, a U-Net diffusers cannot express, or an `out`
      holding other files (nothing is overwritten but an earlier export).
  """
  from experiments.diffusion import experiment as diffusion  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  config = experiments.read_run_config(workdir, 'diffusion')
  if os.path.isdir(out) and set(os.listdir(out)) - _OURS:
    raise UserError(f'--out={out} holds other files; give a new or empty folder.')
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  try:
    in_kernel = ckpt.saved_shapes()['params/params/conv_in/kernel']  # (3, 3, C, ch)
  finally:
    ckpt.close()
  spec = diffusers_unet.spec_from_gen_jax_config(config, channels=int(in_kernel[2]))
  scheduler_config = diffusers_unet.scheduler_config_from_fields(config)
  unet_config = diffusers_unet.diffusers_config_from_spec(spec)
  experiment = diffusion.DiffusionExperiment(
      config, parallel.make_mesh(), image_shape=(spec.image_size, spec.image_size,
                                                 spec.channels))
  state = trainer.restore_latest(experiment, workdir)
  params = jax.tree.map(np.asarray, jax.device_get(state.ema_params if ema else state.params))
  state_dict = diffusers_unet.state_dict_from_params(params, spec)
  return diffusers_unet.write_folder(
      out, unet_config, state_dict, scheduler_config,
      metadata={'gen_jax_workdir': workdir, 'gen_jax_step': str(int(state.step)),
                'gen_jax_params': 'ema' if ema else 'raw'})


def define_flags():
  flags.DEFINE_string('workdir', None, 'The gen_jax diffusion run.', required=True)
  flags.DEFINE_string('out', None, 'The diffusers folder to write.', required=True)
  flags.DEFINE_bool('raw', False, 'The trained, not the EMA, params.')


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  args = cli.flag_values('workdir', 'out', 'raw')
  written = export_run(args.workdir, args.out, ema=not args.raw)  # UserError: cli.run
  print(f'wrote {args.out}: ' + ', '.join(os.path.basename(p) for p in written))


def run():
  """The console script gen-jax-export-diffusers."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
