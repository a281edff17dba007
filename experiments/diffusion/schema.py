"""The diffusion family's config schema: the shared blocks (experiments/schema.py) plus
the diffusion family's model, process and sampler blocks, each field with its default and a one-line comment.
"""

import ml_collections

from experiments import schema as shared

# Fields a resumed run may change besides the shared ones (gen_jax.platform.run_config,
# which lets every sampling.* field change): none.
RESUMABLE_FIELDS = ()

# Renamed fields, old -> new: the bound's held-out examples moved to the shared name.
RENAMED = {'eval.vlb_examples': 'eval.held_out_examples'}
DROPPED_WITH_RENAMES = ()

# Fields added after runs were recorded without them: the value such a run behaved as.
HISTORICAL_DEFAULTS = {
    'sampling.dynamic_threshold': 0.0, 'sampling.threshold_max': 0.0,
    'sampling.sigma_schedule': 'model', 'sampling.rho': 7.0, 'sampling.sigma_min': 0.0,
    'sampling.sigma_max': 0.0, 'sampling.s_churn': 0.0, 'sampling.s_tmin': 0.0,
    'sampling.s_tmax': float('inf'), 'sampling.s_noise': 1.0, 'sampling.spacing': 'uniform',
    'model.dtype': 'float32',
    # The U-Net's numerics options, before which every run used the DDPM U-Net's.
    'model.norm_eps': 1e-6, 'model.flip_sin_to_cos': False, 'model.freq_shift': 1.0,
    'model.downsample_padding': 0, 'model.attn_head_dim': 0,
}


def get_schema() -> ml_collections.ConfigDict:
  """The shared blocks plus the diffusion family's model, process and sampler blocks."""
  config = shared.get_schema()
  config.family = 'diffusion'  # the family that runs this config (experiments/diffusion/).

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

  # 'ddpm' (ancestral), 'ddim', or the sigma-space samplers 'dpmpp_2m' (DPM-Solver++ 2M),
  # 'dpmpp_1', 'dpmpp_2m_sde', 'euler', 'heun', 'euler_ancestral' (README, Samplers).
  config.sampling.sampler = 'ddpm'
  config.sampling.num_steps = 1000  # solver steps (DDPM always uses all T; Heun: 2S-1 NFE).
  config.sampling.eta = 0.0  # DDIM stochasticity (0: deterministic, 1: DDPM posterior).
  config.sampling.spacing = 'uniform'  # DDIM timestep spacing: 'uniform', 'leading', 'quad'.
  config.sampling.clip_x0 = True  # clip predicted x0 to [-1, 1] at each step.
  # Dynamic thresholding (Imagen) of predicted x0 instead of clipping: the quantile of |x0|
  # per sample that becomes the range (e.g. 0.995); 0 turns it off.
  config.sampling.dynamic_threshold = 0.0
  config.sampling.threshold_max = 0.0  # dynamic thresholding: largest range (0: no limit).
  # Sigma-space samplers: 'model' (the trained timesteps) or 'karras' (EDM's noise levels).
  config.sampling.sigma_schedule = 'model'
  config.sampling.rho = 7.0  # Karras schedule exponent.
  config.sampling.sigma_min = 0.0  # Karras schedule: smallest sigma (0: the schedule's own).
  config.sampling.sigma_max = 0.0  # Karras schedule: largest sigma (0: the schedule's own).
  config.sampling.s_churn = 0.0  # euler/heun: EDM's churn (0: the deterministic ODE).
  config.sampling.s_tmin = 0.0  # euler/heun: churn only at sigma >= s_tmin.
  config.sampling.s_tmax = float('inf')  # euler/heun: churn only at sigma <= s_tmax.
  config.sampling.s_noise = 1.0  # euler/heun: churn noise scale.
  config.sampling.ddpm_variance = 'small'  # DDPM: 'small' (posterior) or 'large' (beta_t).
  config.sampling.guidance_scale = 0.0  # w: (1 + w) f(x, c) - w f(x, null); 0 = conditional.
  config.sampling.class_label = -1  # class to sample (-1: one grid row per class).

  # The variational bound (bits/dim) on data.eval_split, part of every evaluation.
  config.eval.vlb_strata = 100  # stratified timesteps per image (0: all T, exact).
  return config
