"""Optimizers from the config's `optim` block: Adam(W) with warmup, decay and clipping.

The optimizer is built once; the peak learning rate is an argument of each update
(`optimizer.update(grads, opt_state, params, peak_lr=...)`), so a vmapped trial's own
traced rate (gen_jax.core.vmap_trials) goes through the same transformation, and a plain run
passes the config's number. `optax.inject_hyperparams` would do the same by keeping the
rate in the optimizer state, which would change that state and so every checkpoint's
tree: the rate is passed instead, and the state is exactly `optax.adam(schedule)`'s.
"""

import optax

from gen_jax.platform.errors import UserError


def learning_rate_schedule(optim_config, num_steps: int, lr) -> optax.Schedule:
  """Linear warmup from 0 to `lr` over `warmup_steps`, then constant or cosine to 0.

  `lr` may be a Python number or a traced scalar (a vmapped trial's own peak rate).
  """
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


def _scale_by_scheduled_peak(optim_config, num_steps: int):
  """optax.scale_by_learning_rate(schedule) with the schedule's peak given to `update`
  (`peak_lr=`): the same state (a step count) and the same arithmetic."""

  def init(params):
    return optax.scale_by_schedule(lambda count: 0.0).init(params)

  def update(updates, state, params=None, *, peak_lr, **extra_args):
    del extra_args
    schedule = learning_rate_schedule(optim_config, num_steps, peak_lr)
    return optax.scale_by_schedule(lambda count: -1 * schedule(count)).update(
        updates, state, params)

  return optax.GradientTransformationExtraArgs(init, update)


def make_optimizer(optim_config, num_steps: int) -> optax.GradientTransformationExtraArgs:
  """The optax transformation of the `optim` block; its `update` takes `peak_lr=`.

  Args:
    optim_config: the config's `optim` block.
    num_steps: run length (for decaying schedules).
  Returns:
    Adam or AdamW (after global-norm clipping when `optim.grad_clip` > 0), whose state
    is that of `optax.adam` / `optax.adamw` with a schedule.
  """
  config = optim_config
  if config.optimizer == 'adam':
    stages = [optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps)]
  elif config.optimizer == 'adamw':
    stages = [optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps),
              optax.add_decayed_weights(config.weight_decay)]
  else:
    raise UserError(f"optim.optimizer must be 'adam' or 'adamw', not {config.optimizer!r}.")
  learning_rate_schedule(config, num_steps, 1.0)  # optim.decay fails here, not in a step
  base = optax.chain(*stages, _scale_by_scheduled_peak(config, num_steps))
  if config.grad_clip > 0:
    base = optax.chain(optax.clip_by_global_norm(config.grad_clip), base)
  return base


def check_rate(name: str, value) -> None:
  """A learning rate (config field `name`) must be positive."""
  if not value > 0:
    raise UserError(f'{name} must be positive, got {value}.')
