"""One module per family; `build(config)` returns the family's Experiment."""

import importlib

from gen_jax.errors import UserError

# config.family -> 'module:ExperimentClass' (imported on demand).
FAMILIES = {
    'diffusion': 'experiments.diffusion:DiffusionExperiment',
    'vae': 'experiments.vae:VAEExperiment',
    'gan': 'experiments.gan:GANExperiment',
    'ldm': 'experiments.ldm:LatentDiffusionExperiment',
}


def build(config, mesh):
  """The Experiment of `config.family`, on `mesh`."""
  if config.family not in FAMILIES:
    raise UserError(f'unknown family {config.family!r} in the config; '
                    f'known: {", ".join(sorted(FAMILIES))}.')
  module_name, class_name = FAMILIES[config.family].split(':')
  return getattr(importlib.import_module(module_name), class_name)(config, mesh)
