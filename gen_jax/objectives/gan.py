"""GAN objectives as pure functions of discriminator logits, and the two players' losses.

The lecture's game is min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 - D(G(z)))], with
D(x) = sigmoid(logit). In logits, log D = -softplus(-l) and log(1 - D) = -softplus(l).

  loss            discriminator minimises                generator minimises
  'minimax'       softplus(-l_real) + softplus(l_fake)   E[log(1 - D(G(z)))] = -softplus(l_fake)
  'non_saturating' (same as minimax)                      -E[log D(G(z))] = softplus(-l_fake)
  'hinge'         relu(1 - l_real) + relu(1 + l_fake)    -l_fake

The minimax generator loss is the game's value exactly; its gradient vanishes when D
rejects the fakes confidently (early training), which is why the non-saturating loss
(Goodfellow et al. 2014, sec. 3) is the default.

Each player's loss is a closure `loss_fn(params, model_state, batch, rng) ->
(loss, (metrics, model_state))`, the form `train_state.gradient_update(has_state=True)`
takes. The other player's parameters are fixed inside the closure.
"""

from typing import Callable

import jax
import jax.numpy as jnp

LOSSES = ('non_saturating', 'minimax', 'hinge')

# generate(g_params, g_state, z, class_weights, train) -> (samples, new_g_state)
GenerateFn = Callable[..., tuple[jax.Array, dict]]
# discriminate(d_params, d_state, x, class_weights, update_stats) -> (logits (B,), new_d_state)
DiscriminateFn = Callable[..., tuple[jax.Array, dict]]


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, loss: str) -> jax.Array:
  """The discriminator's loss, averaged over examples.  logits: (B,) each."""
  if loss in ('non_saturating', 'minimax'):
    # -E[log D(x)] - E[log(1 - D(G(z)))]: minus the game's value.
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))
  if loss == 'hinge':
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
  raise ValueError(f'unknown GAN loss {loss!r}; use one of {LOSSES}.')


def generator_loss(fake_logits: jax.Array, loss: str) -> jax.Array:
  """The generator's loss, averaged over examples.  fake_logits: (B,)."""
  if loss == 'minimax':
    return jnp.mean(-jax.nn.softplus(fake_logits))  # E[log(1 - D(G(z)))]
  if loss == 'non_saturating':
    return jnp.mean(jax.nn.softplus(-fake_logits))  # -E[log D(G(z))]
  if loss == 'hinge':
    return -jnp.mean(fake_logits)
  raise ValueError(f'unknown GAN loss {loss!r}; use one of {LOSSES}.')


def make_discriminator_loss(discriminate: DiscriminateFn, loss: str,
                            r1_gamma: float = 0.0) -> Callable:
  """The discriminator's loss over a batch of real and (given) fake samples.

  Args:
    discriminate: the discriminator, see `DiscriminateFn`.
    loss: one of `LOSSES`.
    r1_gamma: weight of the R1 penalty (gamma / 2) E||grad_x D(x)||^2 on real data
      (Mescheder et al. 2018); 0 disables it.
  Returns:
    loss_fn(d_params, d_state, batch, rng) -> (loss, (metrics, d_state)). batch holds
    'image' (B, ...) real samples, 'fake' (B, ...) generated ones (no gradient flows to
    the generator) and, for conditional models, 'class_weights' / 'fake_class_weights'
    (B, K). Metrics: d_loss, d_real and d_fake (mean D = sigmoid(logit)), r1.
  """

  def loss_fn(d_params, d_state, batch, rng):
    del rng  # Deterministic given the batch.
    real = batch['image']  # (B, ...)

    def real_logits_fn(x):
      return discriminate(d_params, d_state, x, batch.get('class_weights'), True)

    if r1_gamma > 0:
      real_logits, vjp, d_state_new = jax.vjp(real_logits_fn, real, has_aux=True)
      (grad_x,) = vjp(jnp.ones_like(real_logits))  # (B, ...) d logit_i / d x_i
      r1 = jnp.mean(jnp.sum(jnp.square(grad_x).reshape(real.shape[0], -1), axis=-1))
    else:
      real_logits, d_state_new = real_logits_fn(real)
      r1 = jnp.zeros(())
    fake_logits, _ = discriminate(d_params, d_state, jax.lax.stop_gradient(batch['fake']),
                                  batch.get('fake_class_weights'), False)
    d_loss = discriminator_loss(real_logits, fake_logits, loss)
    total = d_loss + 0.5 * r1_gamma * r1
    metrics = {'d_loss': d_loss, 'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
               'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)), 'r1': r1}
    return total, (metrics, d_state_new)

  return loss_fn


def orthogonal_regularization(params, exclude: tuple[str, ...] = ()) -> jax.Array:
  """BigGAN's orthogonal regularization sum_W ||W^T W * (1 - I)||_F^2 (Brock et al. 2019,
  eq. 3): only the off-diagonal Gram entries, so filters are pushed apart but their norms
  are free.

  Args:
    params: a parameter pytree; every leaf with >= 2 dimensions is a weight W, reshaped
      to (fan_in, out) (flax kernels end with the output axis), so W^T W is (out, out).
    exclude: leaves whose path contains a key of this name are skipped (BigGAN-PyTorch
      skips G's shared class embedding).
  Returns:
    () the sum over weights (multiply by beta, e.g. 1e-4).
  """
  total = jnp.zeros(())
  for path, w in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = {getattr(k, 'key', getattr(k, 'name', None)) for k in path}
    if w.ndim < 2 or names & set(exclude):
      continue
    w = w.reshape(-1, w.shape[-1])  # (fan_in, out)
    gram = w.T @ w  # (out, out)
    total = total + jnp.sum(jnp.square(gram * (1.0 - jnp.eye(gram.shape[0], dtype=gram.dtype))))
  return total


def make_generator_loss(generate: GenerateFn, discriminate: DiscriminateFn, d_params, d_state,
                        loss: str, ortho_beta: float = 0.0,
                        ortho_exclude: tuple[str, ...] = ()) -> Callable:
  """The generator's loss against a fixed discriminator.

  Args:
    generate: the generator, see `GenerateFn` (run in training mode).
    discriminate: the discriminator, see `DiscriminateFn`.
    d_params, d_state: the discriminator's (fixed) parameters and state.
    loss: one of `LOSSES`.
    ortho_beta: weight of `orthogonal_regularization` of G's weights (0: off).
    ortho_exclude: parameter names the regularization skips.
  Returns:
    loss_fn(g_params, g_state, batch, rng) -> (loss, (metrics, g_state)). batch holds
    'z' (B, Z) latent codes and, for conditional models, 'fake_class_weights' (B, K).
    Metrics: g_loss, and g_ortho (the unweighted regularizer) when ortho_beta > 0.
  """

  def loss_fn(g_params, g_state, batch, rng):
    del rng  # z comes in the batch.
    class_weights = batch.get('fake_class_weights')
    fake, g_state = generate(g_params, g_state, batch['z'], class_weights, True)
    logits, _ = discriminate(d_params, d_state, fake, class_weights, False)
    g_loss = generator_loss(logits, loss)
    metrics = {'g_loss': g_loss}
    total = g_loss
    if ortho_beta > 0:
      metrics['g_ortho'] = orthogonal_regularization(g_params, ortho_exclude)
      total = g_loss + ortho_beta * metrics['g_ortho']
    return total, (metrics, g_state)

  return loss_fn
