"""The latent diffusion family's config checks: the diffusion family's, before the
autoencoder is loaded (the latent side, and so the U-Net's size checks, come after)."""

from experiments.diffusion import checks as diffusion_checks


def validate(config) -> None:
  """One-line errors for the diffusion blocks (no size checks: the latent side is not
  known until the autoencoder is loaded; `diffusion_checks.validate_unet_size` then)."""
  diffusion_checks.validate(config, image_size=None)

