"""BigGAN on tfds cifar10 at 32x32: the paper's CIFAR-10 setup as BigGAN-PyTorch's
scripts/launch_cifar_ema.sh runs it (Brock et al. 2019, Appendix C).

G: 4x4x256 -> three up-blocks at 256 channels -> 32x32x3; D: 32 -> 16 -> 8 -> 8 -> 8 at
256 channels (the SN-GAN ResNet widths, G_ch = D_ch = 64 times 4); no attention; the
BatchNorm gains and biases are per-class embeddings (no shared embedding, no
hierarchical z: BigGAN-PyTorch's defaults without --G_shared / --hier); N(0, 0.02) init
(--G_init N02 --D_init N02); hinge loss; 4 D steps per G step; lr 2e-4 for both; Adam(0,
0.999); batch 50; EMA 0.9999 from step 1000; 500 epochs of 1000 steps.
"""

from experiments.gan import schema as gan_schema


def get_config():
  config = gan_schema.get_schema()
  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.model.arch = 'biggan'
  config.model.init = 'dcgan'  # N(0, 0.02), as --G_init N02 --D_init N02
  config.model.z_dim = 128
  config.model.g_ch = 64
  config.model.g_ch_mults = (4, 4, 4)
  config.model.d_ch = 64
  config.model.d_ch_mults = (4, 4, 4, 4)
  config.model.d_num_down = 2
  config.model.shared_dim = 0
  config.model.hierarchical = False
  config.model.g_attn = 0
  config.model.d_attn = 0
  config.gan.conditional = True
  config.gan.loss = 'hinge'
  config.gan.spectral_norm = True
  config.gan.d_steps = 4
  config.optim.g_lr = 2e-4
  config.optim.d_lr = 2e-4
  config.optim.ema_decay = 0.9999
  config.optim.ema_start = 1000
  config.gan.ortho_reg = 0.0  # --G_ortho 0.0
  config.gan.sample_bn_stats = 'standing'
  config.optim.b1 = 0.0
  config.optim.b2 = 0.999
  config.training.batch_size = 50
  config.training.num_steps = 500_000  # 500 epochs of 50,000 images at batch 50
  config.training.log_every = 100
  config.training.checkpoint_every = 5000
  config.training.sample_every = 5000
  config.sampling.num_samples = 100
  config.eval.num_samples = 50_000
  config.eval.batch_size = 500
  config.eval.feature_extractor = 'inception'
  # The BigGAN paper's own CIFAR-10 table could not be read from any source available to
  # this project; the values are as Ho et al. 2020 (DDPM, Table 1) and Song & Ermon 2019
  # (NCSN, Table 1) cite BigGAN's CIFAR-10 result (class-conditional).
  config.eval.paper.source = ('Brock et al. 2019, Large Scale GAN Training for High Fidelity '
                              'Natural Image Synthesis, CIFAR-10 (appendix), as cited by Ho '
                              'et al. 2020 Table 1; not checked against the BigGAN paper itself')
  config.eval.paper.results = (('inception_score', 9.22, ''), ('fid', 14.73, ''))
  return config
