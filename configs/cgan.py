"""Class-conditional DCGAN on the embedded digits: one row of the sample grid per class."""

from configs import dcgan


def get_config():
  config = dcgan.get_config()
  config.gan.conditional = True
  config.gan.cluster_classes = 0  # the labels condition the players, not clusters.
  config.training.num_steps = 3000  # as before dcgan.py's default became 2000 steps.
  config.sampling.num_samples = 100  # balanced: 10 of each digit; the grid has a row a class.
  return config
