"""The classifier family's config schema: the shared blocks (experiments/schema.py) plus
the classifier's model block, each field with its default and a one-line comment.
"""

import ml_collections

from experiments import schema as shared

# Fields a resumed run may change besides the shared ones (gen_jax.platform.run_config): none.
RESUMABLE_FIELDS = ()
# Renamed fields, old -> new: none.
RENAMED = {}
DROPPED_WITH_RENAMES = ()
# Fields added after runs were recorded without them: none besides the shared ones.
HISTORICAL_DEFAULTS = {}


def get_schema() -> ml_collections.ConfigDict:
  """The shared blocks plus the classifier's model block."""
  config = shared.get_schema()
  config.family = 'classifier'  # the family that runs this config (experiments/classifier/).
  config.model = ml_collections.ConfigDict()
  config.model.features = (32, 64, 128)  # channels per level; each later level halves H, W.
  config.model.feature_dim = 128  # penultimate width: the evaluation features.
  config.model.num_groups = 8  # GroupNorm groups (must divide every level's channels).
  config.model.dropout = 0.1  # dropout before the logits.
  config.model.label_smoothing = 0.0  # label smoothing of the cross-entropy.
  return config
