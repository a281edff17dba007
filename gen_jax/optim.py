"""Optimizers from the config's `optim` block: Adam(W) with warmup, decay and clipping."""

import optax

from gen_jax.errors import UserError


def learning_rate_schedule(optim_config, num_steps: int, lr=None) -> optax.Schedule:
  """Linear warmup from 0 to `lr` over `warmup_steps`, then constant or cosine to 0.

  `lr` (default `optim.lr`) may be a traced scalar: a vmapped trial's own peak rate
  (gen_jax.vmap_trials) goes through exactly the same schedule.
  """
  lr = optim_config.lr if lr is None else lr
  warmup = optim_config.warmup_steps
  if optim_config.decay == 'constant':
    after = optax.constant_schedule(lr)
  elif optim_config.decay == 'cosine':
    after = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1))
  else:
    raise UserError(f"optim.decay must be 'constant' or 'cosine', not {optim_config.decay!r}.")
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), after], [warmup])


def make_optimizer(optim_config, num_steps: int, lr: float | None = None,
                   b1: float | None = None):
  """Builds the optax transformation and its learning-rate schedule.

  Args:
    optim_config: the config's `optim` block.
    num_steps: run length (for decaying schedules).
    lr, b1: overrides of `optim.lr` / `optim.b1` (e.g. per player of a GAN). `lr` may be
      a traced scalar (a vmapped trial's rate; the optimizer state does not depend on it).
  Returns:
    (optimizer, schedule).
  """
  if optim_config.lr <= 0 and lr is None:
    raise UserError(f'optim.lr must be positive, got {optim_config.lr}.')
  config = optim_config
  b1 = config.b1 if b1 is None else b1
  schedule = learning_rate_schedule(config, num_steps, lr)
  if config.optimizer == 'adam':
    base = optax.adam(schedule, b1=b1, b2=config.b2, eps=config.eps)
  elif config.optimizer == 'adamw':
    base = optax.adamw(schedule, b1=b1, b2=config.b2, eps=config.eps,
                       weight_decay=config.weight_decay)
  else:
    raise UserError(f"optim.optimizer must be 'adam' or 'adamw', not {config.optimizer!r}.")
  if config.grad_clip > 0:
    base = optax.chain(optax.clip_by_global_norm(config.grad_clip), base)
  return base, schedule
