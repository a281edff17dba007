"""A small class-conditional BigGAN (Brock et al. 2019) on the embedded digits at 16x16.

G (60k parameters): z (96) split into 3 chunks: 4x4x32 -> up-block 8x8x32 (+ self-attention
at 8x8) -> up-block 16x16x16 -> BN, ReLU, conv -> 16x16x1; every BatchNorm class-conditional
on [shared embedding, z chunk] and cross-replica. D (36k): down-blocks 16 -> 8 -> 4 -> 4 at
16, 32, 32 channels (attention at 8x8), projection head. 1 D step per G step, Adam(0, 0.999),
TTUR (2e-4 / 4e-4), orthogonal init and regularization, EMA 0.995 from step 200, standing
statistics for samples.

Sized for 5 minutes on one CPU core: widths 8 and batch 16 buy about 12000 steps in that
time, and at equal wall clock more steps beat wider players and bigger batches. The loss is
the non-saturating one (hinge, the paper's, is configs/biggan_cifar10.py's). Measured
against configs/cgan.py, with the variants that led here:
docs/results/2026-12-01-biggan-vs-cgan-three-seeds.md.
"""

from experiments.gan import schema as gan_schema


def get_config():
  config = gan_schema.get_schema()
  config.data.image_size = 16
  config.model.arch = 'biggan'
  config.model.init = 'orthogonal'
  config.model.z_dim = 96  # 3 chunks of 32: the input layer and the 2 up-blocks.
  config.model.g_ch = 8
  config.model.g_ch_mults = (4, 2)  # 4x4x32 -> 8x8x32 -> 16x16x16.
  config.model.d_ch = 8
  config.model.d_ch_mults = (2, 4, 4)  # 16 -> 8x8x16 -> 4x4x32 -> 4x4x32.
  config.model.d_num_down = 2
  config.model.shared_dim = 32
  config.model.hierarchical = True
  config.model.g_attn = 8
  config.model.d_attn = 8
  config.gan.conditional = True
  config.gan.loss = 'non_saturating'  # hinge: FID 0.145 against 0.125-0.137 (docstring)
  config.gan.spectral_norm = True  # BigGAN's D is spectrally normalised by construction.
  config.gan.d_steps = 1  # SAGAN's 1 D step with TTUR: twice the G steps of 2 D steps.
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 4e-4
  config.optim.ema_decay = 0.995  # a window of ~200 steps: a short run's EMA forgets its start.
  config.optim.ema_start = 200
  config.gan.ortho_reg = 1e-4
  config.gan.sample_bn_stats = 'standing'
  config.optim.b1 = 0.0
  config.optim.b2 = 0.999
  config.training.batch_size = 16  # more steps in 5 CPU minutes beat a bigger batch
  config.training.num_steps = 12000
  config.training.log_every = 500
  config.training.checkpoint_every = 2000
  config.training.sample_every = 4000
  config.sampling.num_samples = 100  # balanced: one row a digit.
  return config
