"""The latent diffusion family's config schema: the diffusion schema
(experiments/diffusion/schema.py) in a trained VAE's latent space, plus the `ldm` block.
"""

import ml_collections

from experiments.diffusion import schema as diffusion

# A latent diffusion run is a diffusion run: the same resumable fields, renames and
# historical defaults.
RESUMABLE_FIELDS = diffusion.RESUMABLE_FIELDS
RENAMED = diffusion.RENAMED
DROPPED_WITH_RENAMES = diffusion.DROPPED_WITH_RENAMES
HISTORICAL_DEFAULTS = diffusion.HISTORICAL_DEFAULTS


def get_schema() -> ml_collections.ConfigDict:
  """The diffusion schema plus the autoencoder whose latents it models."""
  config = diffusion.get_schema()
  config.family = 'ldm'  # the family that runs this config (experiments/ldm/).
  config.ldm = ml_collections.ConfigDict()
  config.ldm.autoencoder_workdir = 'runs/vae_spatial'  # a VAE run with a spatial latent.
  return config
