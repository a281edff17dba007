"""Improved-DDPM-style U-Net on unconditional ImageNet 64x64 (Nichol & Dhariwal 2021).

Data: tfds `downsampled_imagenet/64x64` (van den Oord et al. 2016's 64x64 ImageNet, the
likelihood benchmark's; about 1.28M training images, 50k validation), prepared once as
ArrayRecord and read with grain (63 GB as float32: never held in memory):

    tfds build downsampled_imagenet/64x64 --file_format=array_record --data_dir=DIR

(`imagenet_resized/64x64`, Chrabaszcz et al.'s box-resized ImageNet with labels, works
the same way; it needs the ImageNet archives downloaded by hand first.)

Model and training as the paper's ImageNet 64x64 runs (improved-diffusion's flags):
128 channels, multipliers (1, 2, 3, 4), 3 residual blocks per level, attention at 16 and
8, cosine schedule, T = 4000, Adam 1e-4, batch 128, EMA 0.9999, 1.5M steps. What differs:
gen_jax trains L_simple with fixed variances (the paper's best NLL learns them, L_vlb /
L_hybrid), single-head attention, and no importance sampling of timesteps, so the
paper's NLL is a reference point, not a target this config is expected to reach.
"""

from experiments.diffusion import schema as diffusion_schema


def get_config():
  config = diffusion_schema.get_schema()
  config.data.dataset = 'downsampled_imagenet/64x64'
  config.data.image_size = 64
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  config.data.random_flip = False  # the paper's ImageNet runs do not flip
  config.data.loader = 'grain'
  config.data.num_workers = 4  # README, Input pipeline: what a host needs per images/s

  config.model.ch = 128
  config.model.ch_mult = (1, 2, 3, 4)
  config.model.num_res_blocks = 3
  config.model.attn_resolutions = (16, 8)
  config.model.dropout = 0.0
  config.model.num_groups = 32

  config.diffusion.schedule = 'cosine'
  config.diffusion.num_timesteps = 4000
  config.diffusion.prediction = 'eps'

  config.training.batch_size = 128
  config.training.num_steps = 1_500_000
  config.training.log_every = 100
  config.training.checkpoint_every = 10_000
  config.training.sample_every = 50_000
  config.optim.lr = 1e-4
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0  # improved-diffusion does not clip
  config.optim.ema_decay = 0.9999

  config.sampling.sampler = 'ddim'  # grids during training; the paper's FIDs sample 4000 steps
  config.sampling.num_steps = 250

  config.eval.num_samples = 50_000
  config.eval.batch_size = 500
  config.eval.split = 'train'
  config.eval.reference_examples = 50_000  # Inception statistics of 50k training images
  config.eval.feature_extractor = 'inception'
  config.eval.vlb_strata = 0  # the bound over all 4000 timesteps
  config.eval.held_out_examples = 10_000
  config.eval.paper.source = ('Nichol & Dhariwal 2021, Improved Denoising Diffusion '
                              'Probabilistic Models, Table 2 (ImageNet 64x64, L_vlb)')
  config.eval.paper.results = (('vlb_bits_per_dim', 3.53, ''),)
  return config
