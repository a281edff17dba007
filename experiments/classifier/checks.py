"""The classifier family's config checks: one-line errors before any data is loaded."""

from experiments import config_checks
from gen_jax.platform.errors import UserError


def validate(config) -> None:
  """One-line errors for the model block, before any data is loaded."""
  m = config.model
  features = config_checks.check_int_tuple('model.features', m.features, '(32,64,128)')
  config_checks.check_int('model.feature_dim', m.feature_dim)
  config_checks.check_groups('model.num_groups', m.num_groups, list(features), 'model.features')
  config_checks.check_number('model.dropout', m.dropout, 0.0, 1.0)
  config_checks.check_number('model.label_smoothing', m.label_smoothing, 0.0, 1.0)
  size, scale = config.data.image_size, 2 ** (len(features) - 1)
  if size < scale:  # every level after the first halves H and W, down to at least 1x1
    raise UserError(f'data.image_size={size} is too small for {len(features)} levels of '
                    f'model.features (each after the first halves it): it must be >= {scale}; '
                    f'use fewer levels or larger images.')
