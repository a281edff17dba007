"""The classifier's loss as a pure function: softmax cross-entropy and accuracy."""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

# logits_fn(params, images (B, H, W, C), rng) -> logits (B, K), in training mode.
LogitsFn = Callable[[object, jax.Array, jax.Array], jax.Array]


def make_classification_loss(logits_fn: LogitsFn, label_smoothing: float = 0.0):
  """(params, batch, rng) -> (mean cross-entropy, {'accuracy'}) for batch image/label."""

  def loss_fn(params, batch, rng):
    logits = logits_fn(params, batch['image'], rng)  # (B, K)
    targets = optax.smooth_labels(jax.nn.one_hot(batch['label'], logits.shape[-1]),
                                  label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets).mean()
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
    return loss, {'accuracy': accuracy}

  return loss_fn
