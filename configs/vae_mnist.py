"""VAE on tfds MNIST (28x28), Bernoulli likelihood, 32-d latent: a Kingma & Welling
(2014) style setup (their MLP becomes a small conv net). Needs MNIST prepared for tfds
(`tfds build mnist --data_dir=DIR`, then --config.data.data_dir=DIR); held-out numbers
use the MNIST 'test' split (10,000 images).
"""

import ml_collections

from experiments.vae import schema as vae_schema


def get_config() -> ml_collections.ConfigDict:
  config = vae_schema.get_schema()
  config.data.dataset = 'mnist'
  config.data.image_size = 28  # 28 -> 14 -> 7 with two conv levels.
  config.model.features = (32, 64)
  config.model.hidden = 500  # Kingma & Welling's hidden width.
  config.vae.latent_shape = (32,)
  config.vae.likelihood = 'bernoulli'
  config.vae.iwae_samples = 100
  config.training.batch_size = 128
  config.training.num_steps = 20000
  config.training.log_every = 100
  config.training.checkpoint_every = 2000
  config.training.sample_every = 5000
  config.training.eval_every = 5000
  config.optim.lr = 1e-3
  config.optim.ema_decay = 0.999
  config.eval.classifier_workdir = 'runs/classifier_mnist'  # configs/classifier_mnist.py
  config.eval.num_samples = 10_000
  config.eval.batch_size = 1000
  # Not the same likelihood: the paper binarizes MNIST, gen_jax's Bernoulli takes grey
  # levels as probabilities (see gen_jax/objectives/vae.py); compare with care.
  config.eval.paper.source = ('Burda et al. 2016, Importance Weighted Autoencoders, Table 1 '
                              '(VAE, one stochastic layer, k = 1; binarized MNIST, nats; quoted from '
                              'memory, not checked against the paper)')
  config.eval.paper.results = (('iwae_nll', 86.76, ''),)
  return config
