"""A CNN classifier on tfds MNIST at 28x28: the feature extractor of `--mode=eval` for the
MNIST configs (configs/vae_mnist.py). Needs MNIST prepared for tfds
(`tfds build mnist --data_dir=DIR`, then --config.data.data_dir=DIR).
"""

from experiments.classifier import schema as classifier_schema


def get_config():
  config = classifier_schema.get_schema()
  config.data.dataset = 'mnist'
  config.data.image_size = 28
  config.training.batch_size = 128
  config.training.num_steps = 5000
  config.training.log_every = 100
  config.training.checkpoint_every = 1000
  config.training.sample_every = 5000
  config.training.eval_every = 1000
  config.optim.lr = 1e-3
  config.optim.decay = 'cosine'
  config.optim.ema_decay = 0.999
  return config
