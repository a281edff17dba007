"""Class-conditional DCGAN on the embedded digits: one row of the sample grid per class."""

from configs import dcgan


def get_config():
  config = dcgan.get_config()
  config.gan.conditional = True
  config.sampling.num_samples = 100  # balanced: 10 of each digit; the grid has a row a class.
  return config
