"""The denoising training loss, as a pure function (params, batch, rng) -> (loss, metrics)."""

from typing import Callable

import jax
import jax.numpy as jnp

from gen_jax.core import parallel
from gen_jax.diffusion import guidance
from gen_jax.diffusion import schedules

_DROPOUT_STREAM = 0x7FFFFFFF  # folded into the step key for dropout, apart from examples

# model_fn(params, x_t, t, batch, rng) -> network output (B, H, W, C); rng for dropout.
ModelFn = Callable[..., jax.Array]


def make_diffusion_loss(model_fn: ModelFn, schedule: schedules.Schedule,
                        prediction: str = 'eps', label_drop_prob: float = 0.0,
                        null_label: int = -1) -> Callable:
  """L_simple: E_{t, eps} ||target - f(x_t, t)||^2, target eps, x0 or v.

  t ~ U{0..T-1}, eps ~ N(0, I), x_t from `schedules.q_sample`. The loss is the mean
  over pixels and batch. Metrics also split it by quarter of the timestep range
  (`loss_q0` = the least noisy quarter), where training problems usually show.

  Args:
    model_fn: the network, `model_fn(params, x_t, t, batch, rng)`.
    schedule: the noise schedule.
    prediction: 'eps', 'x0' or 'v'.
    label_drop_prob: with class conditioning, replace batch['label'] by `null_label`
      with this probability per example (classifier-free guidance training).
    null_label: the "no class" label.
  Returns:
    loss_fn(params, batch, rng) -> (loss, metrics); batch['image'] is (B, H, W, C) and
    batch['index'] (B,) the examples' positions in the global batch: t and eps of an
    example are drawn from fold_in(rng, index), so the loss does not depend on how the
    batch is split over devices. The network's dropout key folds this device's first
    index into a separate stream, so it differs between devices.
  """
  if prediction not in schedules.PREDICTIONS:
    raise ValueError(f'unknown prediction {prediction!r}; use one of {schedules.PREDICTIONS}.')

  def loss_fn(params, batch, rng):
    x0 = batch['image']  # (B, H, W, C)
    keys = parallel.per_example_keys(rng, batch['index'])  # (B,) keys
    t = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, 0), (), 0,
                                              schedule.num_timesteps))(keys)  # (B,)
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), x0.shape[1:],
                                                 x0.dtype))(keys)  # (B, H, W, C)
    rng_model = jax.random.fold_in(jax.random.fold_in(rng, _DROPOUT_STREAM), batch['index'][0])
    if label_drop_prob > 0:
      batch = dict(batch, label=guidance.drop_labels(batch['label'], keys, label_drop_prob,
                                                     null_label))
    x_t = schedules.q_sample(schedule, x0, t, noise)
    output = model_fn(params, x_t, t, batch, rng_model)
    target = schedules.target_for(prediction, schedule, x0, t, noise)
    per_example = jnp.mean(jnp.square(output - target), axis=range(1, x0.ndim))  # (B,)
    loss = jnp.mean(per_example)
    metrics = {'loss': loss}
    quarter = t * 4 // schedule.num_timesteps  # (B,) in 0..3
    for q in range(4):
      mask = (quarter == q).astype(per_example.dtype)
      # Summed, not averaged, so that the per-device pmean and a final division
      # (see `quarter_counts`) give the exact global mean.
      metrics[f'loss_q{q}_sum'] = jnp.sum(per_example * mask)
      metrics[f'loss_q{q}_count'] = jnp.sum(mask)
    return loss, metrics

  return loss_fn


def finalize_quarter_metrics(metrics: dict) -> dict:
  """Replaces loss_q*_sum / loss_q*_count pairs by their ratio loss_q* (on host)."""
  out = {k: v for k, v in metrics.items() if not k.startswith('loss_q')}
  for q in range(4):
    total, count = metrics.get(f'loss_q{q}_sum'), metrics.get(f'loss_q{q}_count')
    if total is not None and count:
      out[f'loss_q{q}'] = float(total) / float(count)
  return out
