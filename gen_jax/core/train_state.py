"""The pytree that is trained and checkpointed, and the shared gradient update.

One `TrainState` serves every family: `params` and `opt_state` are arbitrary pytrees
(a GAN keeps {'generator': ..., 'discriminator': ...} in each), `model_state` holds
non-trained variables (batch statistics, spectral-norm vectors), `ema_params` the
exponential moving average used for sampling. The data position is `step` (see
`gen_jax.data.arrays.BatchSource`), so the checkpoint of this state is the whole run.

A run of vmapped trials (gen_jax.core.vmap_trials) steps a subclass whose `hparams` hold each
trial's values of the config fields that differ between trials (they reach the family's
step as its `hparams` argument, see gen_jax.core.family). Plain runs' states (and so their
checkpoints) are unchanged.
"""

from typing import Any, Callable

import flax.struct
import jax
from jax import lax
import jax.numpy as jnp
import optax

from gen_jax.core import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # () int32: optimizer steps taken == batches consumed
  rng: jax.Array  # (2,) uint32: the base key (from config.seed)
  params: Any
  opt_state: Any
  ema_params: Any
  model_state: Any = flax.struct.field(default_factory=dict)


def ema_update(ema_params, params, decay, step: jax.Array):
  """ema <- d ema + (1 - d) params, with d = min(decay, (1 + step) / (10 + step)).

  The warm-up of d keeps the average from being dominated by the random initialisation
  in short runs (as in TensorFlow's ExponentialMovingAverage with num_updates).
  `decay` is a Python float, or a traced scalar for a vmapped trial, where decay 0 gives
  d = 0 and so exactly `params`, as the shortcut below does for a float.
  """
  if isinstance(decay, (int, float)) and decay <= 0:
    return params
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step))
  return jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, ema_params, params)


def gradient_update(loss_fn: Callable, optimizer: optax.GradientTransformation, params,
                    opt_state, batch, rng, has_state: bool = False, model_state=None,
                    peak_lr=None):
  """One data-parallel gradient step, written for one device.

  The gradient of this device's loss is averaged over the `data` axis with
  `lax.pmean`, as are the metrics, so every device applies the same update.

  Args:
    loss_fn: `(params, batch, rng) -> (loss, metrics)`, or with `has_state`
      `(params, model_state, batch, rng) -> (loss, (metrics, new_model_state))`.
    optimizer: the optax transformation.
    params, opt_state: what is updated (replicated).
    batch: this device's shard of the batch.
    rng: this device's key.
    has_state: whether loss_fn takes and returns model_state.
    model_state: non-trained variables (e.g. batch statistics).
    peak_lr: the peak learning rate, for an optimizer of `gen_jax.core.optim.make_optimizer`
      (a Python number, or a vmapped trial's traced one); None: the optimizer takes none.
  Returns:
    (params, opt_state, metrics, model_state); metrics include `grad_norm`.
  """
  varying = parallel.as_varying(params)  # per-device gradients (see gen_jax.core.parallel)
  if has_state:
    grad_fn = jax.value_and_grad(lambda p: loss_fn(p, model_state, batch, rng), has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(varying)
    model_state = lax.pmean(model_state, parallel.DATA_AXIS)
  else:
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(varying, batch, rng)
  grads = lax.pmean(grads, parallel.DATA_AXIS)
  metrics = lax.pmean(dict(metrics, loss=loss), parallel.DATA_AXIS)
  extra = {} if peak_lr is None else {'peak_lr': peak_lr}
  updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
  params = optax.apply_updates(params, updates)
  metrics['grad_norm'] = optax.tree.norm(grads)
  return params, opt_state, metrics, model_state
