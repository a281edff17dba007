"""DCGAN on tfds cifar10 at 32x32, the paper's setup (Radford et al. 2016):
Adam lr 2e-4, beta1 0.5, batch 128, N(0, 0.02) init, z of 100 dimensions."""

from experiments.gan import schema as gan_schema


def get_config():
  config = gan_schema.get_schema()
  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.model.z_dim = 100
  config.model.g_ch = 128  # 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3
  config.model.d_ch = 128  # 32x32x3 -> 16x16x128 -> 8x8x256 -> 4x4x512
  config.model.init = 'dcgan'
  config.optim.b1 = 0.5
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.ema_decay = 0.0  # the paper samples from the live generator.
  config.training.batch_size = 128
  config.training.num_steps = 100_000
  config.training.log_every = 100
  config.training.checkpoint_every = 5000
  config.training.sample_every = 5000
  config.eval.num_samples = 50_000
  config.eval.batch_size = 400
  config.eval.feature_extractor = 'inception'
  # The DCGAN paper reports no FID; TTUR's DCGAN on CIFAR-10 (original learning rates).
  config.eval.paper.source = ('Heusel et al. 2017, GANs Trained by a Two Time-Scale Update '
                              'Rule, Table 1 (DCGAN, CIFAR-10, original rates; quoted from memory, '
                              'not checked against the paper)')
  config.eval.paper.results = (('fid', 37.7, ''),)
  return config
