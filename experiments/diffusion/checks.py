"""The diffusion family's config checks: one-line errors before any data is loaded."""

from experiments import config_checks
from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules
from gen_jax.diffusion import sigma_samplers
from gen_jax.platform.errors import UserError


def validate_unet(m, size: int | None, size_name: str = 'data.image_size') -> None:
  """One-line errors for the U-Net fields of the `model` block `m`.

  Args:
    m: the config's model block.
    size: the side of the U-Net's input (None: not known yet; the size checks are skipped).
    size_name: what `size` is, for messages.
  Raises:
    UserError: a field the U-Net cannot be built with, or attention at a resolution that
      none of its levels has (which would silently train without it).
  """
  checks = config_checks
  # The sinusoidal time embedding (ch wide) needs at least two frequencies.
  checks.check_int('model.ch', m.ch, 4)
  ch_mult = checks.check_int_tuple('model.ch_mult', m.ch_mult, '(1,2,2)')
  checks.check_int('model.num_res_blocks', m.num_res_blocks, 0)
  checks.check_number('model.dropout', m.dropout, 0.0, 1.0)
  checks.check_int_tuple('model.attn_resolutions', m.attn_resolutions, '(16,)', min_length=0)
  # GroupNorm runs on conv_in's ch channels and on every level's ch * mult.
  checks.check_groups('model.num_groups', m.num_groups, [m.ch] + [m.ch * k for k in ch_mult],
                      'model.ch and model.ch * model.ch_mult')
  if size is not None:
    validate_unet_size(m, size, size_name)


def validate_unet_size(m, size: int, size_name: str = 'data.image_size') -> None:
  """One-line errors for a U-Net (fields already checked by `validate_unet`) whose input
  side `size` its levels cannot downsample, or whose attention resolutions it lacks."""
  ch_mult, attn = tuple(m.ch_mult), tuple(m.attn_resolutions)
  scale = 2 ** (len(ch_mult) - 1)
  if size % scale:
    raise UserError(f'{size_name}={size} must divide by 2^(len(model.ch_mult)-1)={scale} '
                    f'for the U-Net to downsample it; change model.ch_mult or the size.')
  levels = [size // 2 ** i for i in range(len(ch_mult))]
  unreachable = [r for r in attn if r not in levels]
  if unreachable:
    raise UserError(f'model.attn_resolutions={tuple(attn)}: the U-Net has no level at '
                    f'{unreachable} pixels (its levels at {size_name}={size}: {levels}); '
                    f'use some of these, or () for attention in the middle block only.')


def validate(config, image_size: int | None = -1) -> None:
  """One-line errors for values the code below would otherwise trip over deep inside.

  Args:
    config: the run's config.
    image_size: the side of the U-Net's input; -1: `data.image_size`; None: not known yet
      (latent diffusion, before the autoencoder is loaded).
  """
  d, s, m = config.diffusion, config.sampling, config.model
  # The U-Net's own fields first: the checks below compute with them.
  validate_unet(m, config.data.image_size if image_size == -1 else image_size)
  checks = [
      (d.schedule in schedules.SCHEDULES, f'diffusion.schedule must be one of '
       f'{schedules.SCHEDULES}, not {d.schedule!r}'),
      (d.prediction in schedules.PREDICTIONS, f'diffusion.prediction must be one of '
       f'{schedules.PREDICTIONS}, not {d.prediction!r}'),
      (config_checks.is_int(d.num_timesteps) and d.num_timesteps >= 2,
       f'diffusion.num_timesteps must be an integer >= 2, not {d.num_timesteps!r}'),
      (d.schedule not in ('linear', 'scaled_linear') or 0 < d.beta_start <= d.beta_end < 1,
       f'the {d.schedule} schedule needs 0 < diffusion.beta_start <= diffusion.beta_end < 1, '
       f'not {d.beta_start} and {d.beta_end}'),
      (s.sampler in samplers.SAMPLERS, f'sampling.sampler must be one of '
       f'{samplers.SAMPLERS}, not {s.sampler!r}'),
      (s.sampler == 'ddpm' or 1 <= s.num_steps <= d.num_timesteps,
       f'sampling.num_steps must be in [1, {d.num_timesteps}], not {s.num_steps}'),
      (s.spacing in samplers.SPACINGS, f'sampling.spacing must be one of '
       f'{samplers.SPACINGS}, not {s.spacing!r}'),
      (s.ddpm_variance in ('small', 'large'), f"sampling.ddpm_variance must be 'small' "
       f"or 'large', not {s.ddpm_variance!r}"),
      (0.0 <= s.eta <= 1.0, f'sampling.eta must be in [0, 1], not {s.eta}'),
      (m.dtype in ('float32', 'bfloat16'), f"model.dtype must be 'float32' or "
       f"'bfloat16', not {m.dtype!r}"),
      (m.downsample_padding in (0, 1), f'model.downsample_padding must be '
       f'0 or 1, not {m.downsample_padding}'),
      (all(m.ch * k % (m.attn_head_dim or 1) == 0 for k in m.ch_mult),
       f'model.attn_head_dim={m.attn_head_dim} must divide every level\'s '
       f'channels {[m.ch * k for k in m.ch_mult]} (0: one head)'),
  ]
  checks += sigma_sampler_checks(s)
  for ok, message in checks:
    if not ok:
      raise UserError(message + '.')


def sigma_sampler_checks(s) -> list[tuple[bool, str]]:
  """(ok, message) for the sigma-space samplers' fields."""
  if s.sampler not in sigma_samplers.SAMPLERS:
    return [(s.dynamic_threshold < 1.0, f'sampling.dynamic_threshold must be '
             f'in [0, 1), not {s.dynamic_threshold}')]
  sigma_schedule = s.sigma_schedule
  return [
      (s.spacing == 'uniform', f'sampling.spacing={s.spacing!r} is '
       f"DDIM's; {s.sampler} places its steps with sampling.sigma_schedule ('model' or "
       f"'karras'): leave spacing 'uniform'"),
      (sigma_schedule in sigma_samplers.SIGMA_SCHEDULES, f'sampling.sigma_schedule must be '
       f'one of {sigma_samplers.SIGMA_SCHEDULES}, not {sigma_schedule!r}'),
      (s.rho > 0, f'sampling.rho must be > 0, not {s.rho}'),
      (s.sigma_min >= 0 and s.sigma_max >= 0,
       'sampling.sigma_min and sampling.sigma_max must be >= 0 (0: the schedule\'s own)'),
      (s.s_churn >= 0 and s.s_noise >= 0,
       'sampling.s_churn and sampling.s_noise must be >= 0'),
      (s.s_churn == 0 or s.sampler in ('euler', 'heun'),
       f"sampling.s_churn is EDM's churn for 'euler' and 'heun', not {s.sampler!r}"),
      (0.0 <= s.dynamic_threshold < 1.0, f'sampling.dynamic_threshold must be '
       f'in [0, 1), not {s.dynamic_threshold}'),
  ]

