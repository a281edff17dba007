"""A CNN classifier on the embedded digits at 16x16: the offline feature extractor that
`--mode=eval` of the digits configs uses (eval.classifier_workdir).

    python launch.py --config=configs/classifier_digits.py --workdir=runs/classifier_digits

Trains on the 'train' split (1500 images) and reports held-out accuracy on 'test' (297).
"""

import ml_collections

from experiments.classifier import schema


def get_config() -> ml_collections.ConfigDict:
  config = schema.get_schema()
  config.data.image_size = 16
  config.training.batch_size = 64
  config.training.num_steps = 1500
  config.training.log_every = 100
  config.training.checkpoint_every = 500
  config.training.sample_every = 1500  # the misclassified held-out images, at the end
  config.training.eval_every = 500
  config.optim.lr = 1e-3
  config.optim.decay = 'cosine'
  config.optim.ema_decay = 0.99
  return config
