"""DDPM on the embedded digits at 16x16: recognisable digits in minutes on 2 CPU cores."""

import ml_collections

from configs import base


def get_diffusion_config() -> ml_collections.ConfigDict:
  """The base blocks plus the diffusion family's model, process and sampler blocks."""
  config = base.get_base_config()
  config.family = 'diffusion'

  config.model = ml_collections.ConfigDict()
  config.model.ch = 32  # base channels of the U-Net.
  config.model.ch_mult = (1, 2, 2)  # channel multiplier per resolution level.
  config.model.num_res_blocks = 1  # residual blocks per level (one more on the way up).
  config.model.attn_resolutions = (4,)  # resolutions (pixels) with self-attention.
  config.model.dropout = 0.0  # dropout in residual blocks.
  config.model.num_groups = 8  # GroupNorm groups (must divide every level's channels).
  config.model.resample_with_conv = True  # conv after upsample / strided conv to downsample.
  # Computation dtype: 'float32', or 'bfloat16' for mixed precision on GPUs/TPUs (parameters,
  # optimizer, GroupNorm statistics, softmax and the output stay float32; no faster on CPUs).
  config.model.dtype = 'float32'
  # Numerics of the DDPM U-Net; diffusers' UNet2DModel defaults differ (1e-5, True, 0, 1, 8),
  # set by experiments/import_diffusers.py for checkpoints trained with them.
  config.model.norm_eps = 1e-6  # GroupNorm epsilon.
  config.model.flip_sin_to_cos = False  # timestep embedding [cos, sin] instead of [sin, cos].
  config.model.freq_shift = 1.0  # embedding frequencies 10000^(-i / (ch/2 - freq_shift)).
  config.model.downsample_padding = 0  # 0: pad bottom/right before the stride-2 conv; 1: all.
  config.model.attn_head_dim = 0  # channels per attention head (0: one head of all).

  config.diffusion = ml_collections.ConfigDict()
  config.diffusion.schedule = 'linear'  # 'linear' (Ho), 'cosine' (Nichol), 'scaled_linear'.
  config.diffusion.num_timesteps = 1000  # T; timesteps are t = 0..T-1.
  config.diffusion.beta_start = 1e-4  # linear schedule: beta at t = 0.
  config.diffusion.beta_end = 0.02  # linear schedule: beta at t = T-1.
  config.diffusion.prediction = 'eps'  # network target: 'eps', 'x0' or 'v'.
  config.diffusion.class_conditional = False  # condition the U-Net on the data's labels.
  config.diffusion.cond_drop_prob = 0.1  # label dropout (null class) for guidance training.

  config.sampling.sampler = 'ddpm'  # 'ddpm' (ancestral) or 'ddim'.
  config.sampling.num_steps = 1000  # sampler steps (DDPM always uses all T).
  config.sampling.eta = 0.0  # DDIM stochasticity (0: deterministic, 1: DDPM posterior).
  config.sampling.spacing = 'uniform'  # DDIM timestep spacing: 'uniform', 'leading', 'quad'.
  config.sampling.clip_x0 = True  # clip predicted x0 to [-1, 1] at each step.
  config.sampling.ddpm_variance = 'small'  # DDPM: 'small' (posterior) or 'large' (beta_t).
  config.sampling.guidance_scale = 0.0  # w: (1 + w) f(x, c) - w f(x, null); 0 = conditional.
  config.sampling.class_label = -1  # class to sample (-1: one grid row per class).

  # The variational bound (bits/dim) on data.eval_split, part of every evaluation.
  config.eval.vlb_strata = 100  # stratified timesteps per image (0: all T, exact).
  config.eval.vlb_examples = 0  # held-out images used (0: the whole split).
  return config


def get_config() -> ml_collections.ConfigDict:
  config = get_diffusion_config()
  config.training.batch_size = 64
  # Digits are recognisable from ~1000 steps (about 5 minutes on 2 cores).
  config.training.num_steps = 1200
  config.training.checkpoint_every = 400
  config.training.sample_every = 1200  # one 1000-step DDPM grid at the end (~1.5 min)
  config.optim.lr = 1e-3
  config.optim.warmup_steps = 100
  config.optim.ema_decay = 0.995
  # 1000-step ancestral sampling: 512 samples take about 10 minutes on 2 cores.
  config.eval.num_samples = 512
  return config
