"""The VAE family's config checks: one-line errors before any data is loaded."""

from experiments import config_checks
from gen_jax.objectives import vae as objectives
from gen_jax.platform.errors import UserError


def validate(config) -> None:
  """One-line errors for values the code below would otherwise trip over deep inside."""
  v, m, s = config.vae, config.model, config.sampling
  features = config_checks.check_int_tuple('model.features', m.features, '(16,32)')
  config_checks.check_int('model.hidden', m.hidden)
  latent = config_checks.check_int_tuple('vae.latent_shape', v.latent_shape, '(2,)')
  checks = [
      (v.likelihood in objectives.LIKELIHOODS, f'vae.likelihood must be one of '
       f'{objectives.LIKELIHOODS}, not {v.likelihood!r}'),
      (v.obs_variance > 0, f'vae.obs_variance (eta, the Gaussian variance) must be '
       f'positive, not {v.obs_variance}'),
      (v.beta >= 0, f'vae.beta must be >= 0, not {v.beta}'),
      (v.iwae_samples >= 1, f'vae.iwae_samples must be >= 1, not {v.iwae_samples}'),
      (len(latent) in (1, 3) and all(d >= 1 for d in latent),
       f'vae.latent_shape must be (k,) or (h, w, c) with positive sizes, not {latent}'),
      (config.eval.batch_size >= 1, f'eval.batch_size must be positive, not '
       f'{config.eval.batch_size}'),
      (config.eval.held_out_examples >= 0, f'eval.held_out_examples must be >= 0, not '
       f'{config.eval.held_out_examples}'),
      (s.num_samples >= 1, f'sampling.num_samples must be positive, not {s.num_samples}'),
      (s.num_recon >= 1, f'sampling.num_recon must be positive, not {s.num_recon}'),
      (s.manifold_size >= 2, f'sampling.manifold_size must be >= 2, not {s.manifold_size}'),
  ]
  for ok, message in checks:
    if not ok:
      raise UserError(message + '.')
  size, scale = config.data.image_size, 2 ** len(features)
  if size % scale:
    raise UserError(f'data.image_size={size} must divide by 2^len(model.features)={scale} '
                    f'for the encoder to downsample it.')
  if len(latent) == 3 and latent[:2] != (size // scale, size // scale):
    raise UserError(f'a spatial vae.latent_shape={latent} must be (h, w, c) with h = w = '
                    f'data.image_size / 2^len(model.features) = {size // scale}.')
