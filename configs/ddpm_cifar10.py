"""Ho et al. 2020, CIFAR-10 (L_simple): the 35.7M-parameter U-Net on tfds cifar10.

Paper: FID 3.17, IS 9.46, test NLL <= 3.75 bits/dim (Table 1, 800k steps, batch 128).
The paper's own weights are google/ddpm-cifar10-32 on the Hugging Face hub;
docs/checkpoints.md imports them with `python -m experiments.import_diffusers` and
evaluates them with this config, unchanged.
"""

from experiments.diffusion import schema as diffusion_schema


def get_config():
  config = diffusion_schema.get_schema()
  config.data.dataset = 'cifar10'
  config.data.image_size = 32
  config.data.random_flip = True  # as in the paper.

  config.model.ch = 128
  config.model.ch_mult = (1, 2, 2, 2)
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.1
  config.model.num_groups = 32

  config.diffusion.schedule = 'linear'
  config.diffusion.num_timesteps = 1000
  config.diffusion.beta_start = 1e-4
  config.diffusion.beta_end = 0.02
  config.diffusion.prediction = 'eps'

  config.training.batch_size = 128
  config.training.num_steps = 800_000
  config.training.log_every = 100
  config.training.checkpoint_every = 10_000
  config.training.sample_every = 50_000
  config.optim.lr = 2e-4
  config.optim.warmup_steps = 5000
  config.optim.grad_clip = 1.0
  config.optim.ema_decay = 0.9999

  config.sampling.sampler = 'ddpm'
  config.sampling.num_steps = 1000
  config.sampling.clip_x0 = True
  # The paper's CIFAR-10 runs sample with sigma_t^2 = beta_t ('fixedlarge' in its code,
  # variance_type='fixed_large' in the diffusers scheduler of its weights).
  config.sampling.ddpm_variance = 'large'

  # The paper's protocol: 50k samples against the training set's Inception statistics
  # (pool3 of pytorch-fid's Inception-v3: set eval.inception_weights to its .pth file).
  config.eval.num_samples = 50_000
  config.eval.batch_size = 400
  config.eval.split = 'train'
  config.eval.feature_extractor = 'inception'
  config.eval.vlb_strata = 0  # the bound over all 1000 timesteps, as in the paper
  config.eval.paper.source = 'Ho et al. 2020, Denoising Diffusion Probabilistic Models, Table 1 (L_simple)'
  config.eval.paper.results = (('fid', 3.17, ''), ('inception_score', 9.46, ''),
                               ('vlb_bits_per_dim', 3.75, ''))
  return config
