"""The vae family's config schema: the shared blocks (experiments/schema.py) plus
the VAE family's model and `vae` blocks, each field with its default and a one-line comment.
"""

import ml_collections

from experiments import schema as shared

# Fields a resumed run may change besides the shared ones (gen_jax.platform.run_config): none.
RESUMABLE_FIELDS = ()

# Renamed fields, old -> new: the held-out evaluation moved to the shared eval block.
RENAMED = {
    'vae.eval_batch_size': 'eval.batch_size',
    'vae.eval_examples': 'eval.held_out_examples',
}
DROPPED_WITH_RENAMES = ()

# Fields added after runs were recorded without them, at the value such a run behaved as:
# none besides the shared ones.
HISTORICAL_DEFAULTS = {}


def get_schema() -> ml_collections.ConfigDict:
  """The shared blocks plus the VAE family's model and `vae` blocks."""
  config = shared.get_schema()
  config.family = 'vae'  # the family that runs this config (experiments/vae/).

  config.model = ml_collections.ConfigDict()
  config.model.features = (16, 32)  # conv channels per level; each level halves H and W.
  config.model.hidden = 256  # dense width between the conv stack and a flat latent.

  config.vae = ml_collections.ConfigDict()
  # (k,) for a flat k-dim latent; (h, w, c) spatial, h = w = image_size / 2^len(features).
  config.vae.latent_shape = (2,)
  config.vae.likelihood = 'bernoulli'  # p(x|z): 'bernoulli' (intensities as probs) or 'gaussian'.
  config.vae.obs_variance = 0.01  # eta: fixed variance of the Gaussian, on the [0, 1] scale.
  config.vae.beta = 1.0  # weight of the KL term (beta-VAE); eval/elbo always uses 1.
  config.vae.iwae_samples = 100  # K importance samples per held-out example for eval/iwae_nll.

  config.sampling.num_samples = 64  # prior samples per grid / .npz.
  config.sampling.num_recon = 32  # held-out images shown above their reconstructions.
  config.sampling.manifold_size = 20  # 2-d flat latents: manifold grid points per axis.
  return config
