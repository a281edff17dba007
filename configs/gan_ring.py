"""MLP GAN on the 2-d ring of 8 Gaussians (mode-collapse benchmark of Metz et al. 2017).

Logs eval/modes_covered (of 8) and eval/high_quality_fraction (within 3 std of a mode)
every training.eval_every steps, and writes a scatter of samples over the modes.
"""

from experiments.gan import schema as gan_schema


def get_config():
  config = gan_schema.get_schema()
  config.data.dataset = 'ring8'  # (N, 2) points; data.image_size is unused.
  config.model.arch = 'mlp'
  config.model.z_dim = 16
  config.model.hidden = 128
  config.model.layers = 3
  config.model.init = 'lecun'
  config.optim.g_lr = 1e-3
  config.optim.d_lr = 1e-3
  # R1 lets D resolve the 0.02-std modes and keeps the run off partial collapse: without
  # it (--config.gan.r1_gamma=0) the same run settles on about 4 of the 8 modes.
  config.gan.r1_gamma = 0.1
  config.optim.ema_decay = 0.999
  config.training.batch_size = 256
  config.training.num_steps = 10000
  config.training.log_every = 1000
  config.training.checkpoint_every = 5000
  config.training.sample_every = 5000
  config.training.eval_every = 1000
  config.sampling.num_samples = 2000  # points per evaluation, scatter and npz.
  return config
