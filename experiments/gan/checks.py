"""The GAN family's config checks: one-line errors before any data is loaded."""

import numpy as np

from experiments import config_checks
from gen_jax.models import dcgan
from gen_jax.objectives import gan
from gen_jax.platform.errors import UserError


ARCHS = ('dcgan', 'biggan', 'mlp')
BN_STATS = ('running', 'standing')


def validate(config) -> None:
  """One-line errors for the family's own blocks (`runner` checks training / sampling)."""
  g, m, t, o = config.gan, config.model, config.training, config.optim
  size = config.data.image_size
  for name in ('z_dim', 'g_ch', 'd_ch', 'hidden', 'layers', 'embed_dim'):
    config_checks.check_int(f'model.{name}', m[name])
  config_checks.check_int('gan.latent_classes', g.latent_classes, minimum=0)
  config_checks.check_int('gan.cluster_classes', g.cluster_classes, minimum=0)
  config_checks.check_number('model.bn_momentum', m.bn_momentum, 0.0, 1.0)
  config_checks.check_int('gan.d_steps', g.d_steps)
  checks = [
      (g.loss in gan.LOSSES, f'gan.loss must be one of {gan.LOSSES}, not {g.loss!r}'),
      (o.g_lr > 0 and o.d_lr > 0, f'optim.g_lr and optim.d_lr must be positive, not '
       f'{o.g_lr} and {o.d_lr}'),
      (g.r1_gamma >= 0, f'gan.r1_gamma must be >= 0, not {g.r1_gamma}'),
      (0 <= o.ema_decay < 1, f'optim.ema_decay must be in [0, 1), not {o.ema_decay}'),
      (g.truncation >= 0, f'gan.truncation must be >= 0 (0: off), not {g.truncation}'),
      (g.interp_steps >= 2, f'gan.interp_steps must be >= 2, not {g.interp_steps}'),
      (g.interp_rows >= 1, f'gan.interp_rows must be >= 1, not {g.interp_rows}'),
      (m.arch in ARCHS, f'model.arch must be one of {ARCHS}, not {m.arch!r}'),
      (g.sample_bn_stats in BN_STATS,
       f'gan.sample_bn_stats must be one of {BN_STATS}, not {g.sample_bn_stats!r}'),
      (g.sample_bn_stats == 'running' or m.arch != 'mlp',
       "gan.sample_bn_stats='standing' needs BatchNorm: model.arch='dcgan' or 'biggan'"),
      (g.standing_batches >= 1, f'gan.standing_batches must be >= 1, not {g.standing_batches}'),
      (g.latent_classes == 0 or not g.conditional,
       f'gan.latent_classes={g.latent_classes} is a code for an unconditional G; with '
       'gan.conditional=True the labels take its place: set gan.latent_classes=0'),
      (g.latent_classes == 0 or m.arch in ('dcgan', 'mlp'),
       f"gan.latent_classes needs model.arch='dcgan' or 'mlp', not {m.arch!r}"),
      (g.latent_classes == 0 or config.sampling.num_samples >= g.latent_classes,
       f'sampling.num_samples={config.sampling.num_samples} must be at least '
       f'gan.latent_classes={g.latent_classes} (balanced codes)'),
      (g.cluster_classes == 0 or not (g.conditional or g.latent_classes),
       f'gan.cluster_classes={g.cluster_classes} conditions the players on k-means clusters '
       'in place of labels or codes: set gan.conditional=False and gan.latent_classes=0'),
      (g.ortho_reg >= 0, f'gan.ortho_reg must be >= 0 (0: off), not {g.ortho_reg}'),
      (o.ema_start >= 0, f'optim.ema_start must be >= 0, not {o.ema_start}'),
      (m.init in dcgan.INITS, f'model.init must be one of {dcgan.INITS}, not {m.init!r}'),
      (m.d_norm in dcgan.D_NORMS,
       f'model.d_norm must be one of {dcgan.D_NORMS}, not {m.d_norm!r}'),
      (m.d_norm == 'none' or m.arch == 'dcgan',
       f"model.d_norm={m.d_norm!r} is for model.arch='dcgan'; set model.d_norm='none'"),
      # R1's input gradient would flow through the batch statistics (coupling examples,
      # and devices differently from one device): a different penalty, so refused.
      (m.d_norm == 'none' or g.r1_gamma == 0,
       f"gan.r1_gamma={g.r1_gamma} needs model.d_norm='none' (a batch-normalised D couples "
       "the examples' input gradients); set one of them to 0 / 'none'"),
      (config.data.dataset != 'ring8' or m.arch == 'mlp',
       "data.dataset='ring8' holds 2-d points: set model.arch='mlp'"),
      (m.arch != 'dcgan' or (size >= 8 and 4 * 2 ** round(np.log2(size / 4)) == size),
       f"data.image_size={size} must be 4 * 2^k (8, 16, 32, 64, ...) for model.arch='dcgan'"),
      (m.arch != 'biggan' or size == 4 * 2 ** len(m.g_ch_mults),
       f'data.image_size={size} must be 4 * 2^len(model.g_ch_mults) = '
       f"{4 * 2 ** len(m.g_ch_mults)} for model.arch='biggan'"),
      (m.arch != 'biggan' or not m.hierarchical or m.z_dim % (len(m.g_ch_mults) + 1) == 0,
       f'model.z_dim={m.z_dim} must be a multiple of len(model.g_ch_mults) + 1 = '
       f'{len(m.g_ch_mults) + 1} (hierarchical latent: one chunk per block plus the input)'),
      (m.arch != 'biggan' or g.conditional or m.hierarchical,
       "model.arch='biggan' conditions its BatchNorms on the class or z chunks: set "
       'gan.conditional=True or model.hierarchical=True'),
      (m.arch != 'biggan' or 0 <= m.d_num_down <= len(m.d_ch_mults),
       f'model.d_num_down={m.d_num_down} must be in [0, len(model.d_ch_mults)]'),
      (t.eval_every == 0 or config.data.dataset == 'ring8' or config.eval.num_samples_train,
       "training.eval_every needs data.dataset='ring8' (mode coverage) or "
       "eval.num_samples_train > 0 (sample metrics); set one, or eval_every=0"),
  ]
  for ok, message in checks:
    if not ok:
      raise UserError(message + '.')
