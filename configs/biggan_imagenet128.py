"""BigGAN at 128x128 on ImageNet (Brock et al. 2019): the full model, batch 2048 over a pod
slice. Architecture as BigGAN-PyTorch's launch_BigGAN_bs256x8.sh (G_ch = D_ch = 96,
attention at 64x64 in both players, shared embedding of 128, hierarchical z of 120 in 6
chunks of 20, orthogonal init, BatchNorm eps 1e-5, Adam eps 1e-6); training as the paper
(Section 3 and Appendix C: lr 5e-5 for G and 2e-4 for D, 2 D steps per G step,
orthogonal regularization beta 1e-4, EMA 0.9999 from step 20000, cross-replica BatchNorm,
standing statistics at sample time). Run it with sweeps/biggan_imagenet128.py on a TPU pod
slice (docs/families/gan.md).
"""

from experiments.gan import schema as gan_schema


def get_config():
  config = gan_schema.get_schema()
  config.data.dataset = 'imagenet2012'  # tfds; needs the manually downloaded archives
  config.data.image_size = 128
  config.model.arch = 'biggan'
  config.model.init = 'orthogonal'
  config.model.z_dim = 120
  config.model.g_ch = 96
  config.model.g_ch_mults = (16, 8, 4, 2, 1)  # 4x4x1536 -> ... -> 128x128x96
  config.model.d_ch = 96
  config.model.d_ch_mults = (1, 2, 4, 8, 16, 16)  # 64x64x96 -> ... -> 4x4x1536 -> 4x4x1536
  config.model.d_num_down = 5
  config.model.shared_dim = 128
  config.model.hierarchical = True
  config.model.g_attn = 64
  config.model.d_attn = 64
  config.model.bn_epsilon = 1e-5
  config.gan.conditional = True
  config.gan.loss = 'hinge'
  config.gan.spectral_norm = True
  config.gan.d_steps = 2
  config.optim.g_lr = 5e-5
  config.optim.d_lr = 2e-4
  config.optim.ema_decay = 0.9999
  config.optim.ema_start = 20_000
  config.gan.ortho_reg = 1e-4
  config.gan.sample_bn_stats = 'standing'
  config.optim.b1 = 0.0
  config.optim.b2 = 0.999
  config.optim.eps = 1e-6
  config.training.batch_size = 2048
  config.training.num_steps = 150_000  # BigGAN-PyTorch's README: 150k iterations at 2048
  config.training.log_every = 100
  config.training.checkpoint_every = 2000
  config.training.sample_every = 2000
  config.sampling.num_samples = 64
  config.eval.num_samples = 50_000
  config.eval.batch_size = 500
  config.eval.feature_extractor = 'inception'
  config.eval.paper.source = ('Brock et al. 2019, Large Scale GAN Training for High Fidelity '
                              'Natural Image Synthesis, abstract (ICLR version; arXiv v1 said '
                              'IS 166.3, FID 9.6)')
  config.eval.paper.results = (('inception_score', 166.5, ''), ('fid', 7.4, ''))
  return config
