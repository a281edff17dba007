"""Class conditioning for diffusion: label dropout and classifier-free guidance.

Convention (Ho & Salimans 2022): with guidance scale w,

    out = (1 + w) f(x, t, c) - w f(x, t, null),

applied to the network's output (eps, x0 or v: each is affine in the others given x_t,
so guiding any of them is the same guidance). w = 0 is plain conditional sampling;
w > 0 trades diversity for class fidelity. The null class is label `num_classes`.
"""

import jax
import jax.numpy as jnp


def drop_labels(labels: jax.Array, keys: jax.Array, drop_prob: float,
                null_label: int) -> jax.Array:
  """Replaces each label by the null label with probability drop_prob.

  Args:
    labels: (B,) int class labels.
    keys: (B,) per-example keys (see `parallel.per_example_keys`).
    drop_prob: probability of dropping a label; 0 never drops.
    null_label: the label that means "no class".
  Returns:
    (B,) labels.
  """
  if drop_prob <= 0:
    return labels
  u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 2)))(keys)  # (B,)
  return jnp.where(u < drop_prob, null_label, labels)


def guided(conditional_fn, x: jax.Array, t: jax.Array, labels: jax.Array,
           null_label: int, scale: float) -> jax.Array:
  """Classifier-free guided network output, one batched call for both branches.

  Args:
    conditional_fn: f(x, t, y) -> output.
    x: (B, H, W, C); t: (B,); labels: (B,).
    null_label: the unconditional label.
    scale: w (see the module docstring).
  Returns:
    (1 + w) f(x, t, y) - w f(x, t, null), shape of x.
  """
  both = conditional_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                        jnp.concatenate([labels, jnp.full_like(labels, null_label)]))
  cond, uncond = jnp.split(both, 2)
  return (1.0 + scale) * cond - scale * uncond


def balanced_labels(num_samples: int, num_classes: int) -> jax.Array:
  """Labels for a class grid: row r of a (num_classes x num_samples/num_classes) grid is
  class r when num_samples divides by num_classes, else classes cycle."""
  i = jnp.arange(num_samples)
  if num_samples % num_classes == 0:
    return (i // (num_samples // num_classes)).astype(jnp.int32)
  return (i % num_classes).astype(jnp.int32)
