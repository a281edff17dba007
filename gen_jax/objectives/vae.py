"""VAE objectives as pure functions: closed-form KL, likelihoods, ELBO and IWAE bounds.

Conventions:
  * Every per-example quantity is a sum over all non-batch axes, in nats.
  * Images arrive in [-1, 1] (as `gen_jax.data.datasets` gives them) and both likelihoods are
    evaluated on the [0, 1] scale x01 = (x + 1) / 2, so bits/dim = nll / (D ln 2) with
    D = H * W * C refers to intensities in [0, 1]:
      - 'gaussian': p(x|z) = N(x01; f(z), eta I); the decoder output f(z) is the mean
        on the [0, 1] scale, eta (`vae.obs_variance`) the fixed variance. The log-density
        includes its constant -D/2 log(2 pi eta), so the bounds are bounds on a real
        log-density (which, being a density, can exceed 0 for small eta).
      - 'bernoulli': the decoder output is a logit l per pixel and x01 is used as the
        probability of "on" (binary data, or intensities as probabilities):
        log p(x|z) = sum x01 log sigmoid(l) + (1 - x01) log sigmoid(-l). For non-binary
        intensities this is a cross-entropy, not a normalised density (the continuous
        Bernoulli would be); it is always <= 0.
  * Random draws of an example are keyed by its global position `index` (see
    `gen_jax.core.parallel.per_example_keys`), so results do not depend on how a
    batch is split over devices.
"""

import math
from typing import Callable

import jax
from jax import lax
import jax.numpy as jnp

from gen_jax.core.parallel import per_example_keys

LIKELIHOODS = ('gaussian', 'bernoulli')
_LOG_2PI = math.log(2.0 * math.pi)

# encode_fn(params, x (B, H, W, C)) -> (mu, logvar), each (B, *latent_shape).
# decode_fn(params, z (B, *latent_shape)) -> (B, H, W, C) parameters of p(x|z).
# log_likelihood_fn(x (B, H, W, C) in [-1, 1], decoder output) -> (B,) log p(x|z).
EncodeFn = Callable[..., tuple[jax.Array, jax.Array]]
DecodeFn = Callable[..., jax.Array]
LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]


def _sum_per_example(x: jax.Array) -> jax.Array:
  """(B, ...) -> (B,): sum over every axis but the first."""
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def kl_standard_normal(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form.

  Args:
    mu, logvar: (B, *latent_shape).
  Returns:
    (B,) 1/2 sum(exp(logvar) + mu^2 - 1 - logvar).
  """
  return 0.5 * _sum_per_example(jnp.exp(logvar) + jnp.square(mu) - 1.0 - logvar)


def log_normal(z: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mu, diag(exp(logvar))) per example.  z, mu, logvar: (B, ...) -> (B,)."""
  return -0.5 * _sum_per_example(jnp.square(z - mu) * jnp.exp(-logvar) + logvar + _LOG_2PI)


def log_standard_normal(z: jax.Array) -> jax.Array:
  """log N(z; 0, I) per example.  z: (B, ...) -> (B,)."""
  return -0.5 * _sum_per_example(jnp.square(z) + _LOG_2PI)


def reparameterize(mu: jax.Array, logvar: jax.Array, eps: jax.Array) -> jax.Array:
  """z = mu + sigma * eps with sigma = exp(logvar / 2): differentiable in mu and logvar."""
  return mu + jnp.exp(0.5 * logvar) * eps


def gaussian_log_likelihood(target: jax.Array, mean: jax.Array,
                            obs_variance: float) -> jax.Array:
  """log N(target; mean, eta I) = -|target - mean|^2 / (2 eta) - D/2 log(2 pi eta).

  Args:
    target, mean: (B, ...) on the same scale (here [0, 1]).
    obs_variance: eta > 0.
  Returns:
    (B,) log-densities.
  """
  return -0.5 * _sum_per_example(jnp.square(target - mean) / obs_variance
                                 + math.log(2.0 * math.pi * obs_variance))


def bernoulli_log_likelihood(probs: jax.Array, logits: jax.Array) -> jax.Array:
  """sum p log sigmoid(l) + (1 - p) log sigmoid(-l): Bernoulli log-probability of binary
  p, or the cross-entropy with intensities p in [0, 1] used as probabilities.

  Args:
    probs, logits: (B, ...).
  Returns:
    (B,) values <= 0.
  """
  return _sum_per_example(probs * jax.nn.log_sigmoid(logits)
                          + (1.0 - probs) * jax.nn.log_sigmoid(-logits))


def make_log_likelihood(likelihood: str, obs_variance: float = 1.0) -> LogLikelihoodFn:
  """log p(x|z) for images x in [-1, 1], evaluated on the [0, 1] scale (see module doc).

  Args:
    likelihood: 'gaussian' or 'bernoulli'.
    obs_variance: eta of the Gaussian (on the [0, 1] scale).
  Returns:
    fn(x, decoder_output) -> (B,).
  """
  if likelihood == 'gaussian':
    if obs_variance <= 0:
      raise ValueError(f'obs_variance must be positive, not {obs_variance}.')
    return lambda x, mean: gaussian_log_likelihood((x + 1.0) / 2.0, mean, obs_variance)
  if likelihood == 'bernoulli':
    return lambda x, logits: bernoulli_log_likelihood((x + 1.0) / 2.0, logits)
  raise ValueError(f'unknown likelihood {likelihood!r}; use one of {LIKELIHOODS}.')


def mean_image(likelihood: str, output: jax.Array) -> jax.Array:
  """The mean of p(x|z) as an image in [-1, 1].  output: (B, H, W, C) decoder output."""
  if likelihood == 'bernoulli':
    return 2.0 * jax.nn.sigmoid(output) - 1.0
  return jnp.clip(2.0 * output - 1.0, -1.0, 1.0)


def standard_normal_like(keys: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """One N(0, I) draw of `shape` per key.  keys: (B,) -> (B, *shape)."""
  return jax.vmap(lambda k: jax.random.normal(k, shape))(keys)


def make_elbo_loss(encode_fn: EncodeFn, decode_fn: DecodeFn,
                   log_likelihood_fn: LogLikelihoodFn, beta: float = 1.0) -> Callable:
  """The negative (beta-)ELBO with one reparameterized sample per example.

  loss = mean_b [ -log p(x_b|z_b) + beta KL(q(z|x_b) || N(0, I)) ],
  z_b = mu_b + sigma_b * eps_b, eps_b drawn from fold_in(rng, index_b).

  Args:
    encode_fn, decode_fn: the networks as functions of params (see module constants).
    log_likelihood_fn: from `make_log_likelihood`.
    beta: weight of the KL term (1: the ELBO; beta-VAE otherwise).
  Returns:
    loss_fn(params, batch, rng) -> (loss, metrics). The metrics, means over the batch
    in nats per example: 'elbo' (log p(x|z) - KL, the true bound whatever beta),
    'kl', and 'recon' (= -log p(x|z), the reconstruction term).
  """

  def loss_fn(params, batch, rng):
    x = batch['image']  # (B, H, W, C)
    mu, logvar = encode_fn(params, x)  # (B, *latent_shape) each
    eps = standard_normal_like(per_example_keys(rng, batch['index']), mu.shape[1:])
    log_lik = log_likelihood_fn(x, decode_fn(params, reparameterize(mu, logvar, eps)))
    kl = kl_standard_normal(mu, logvar)  # (B,)
    loss = jnp.mean(-log_lik + beta * kl)
    return loss, {'elbo': jnp.mean(log_lik - kl), 'kl': jnp.mean(kl),
                  'recon': jnp.mean(-log_lik)}

  return loss_fn


def iwae_bound(log_weights: jax.Array, axis: int = 0) -> jax.Array:
  """log (1/K) sum_k w_k, computed stably with logsumexp.  (K, B) -> (B,) for axis 0."""
  k = log_weights.shape[axis]
  return jax.nn.logsumexp(log_weights, axis=axis) - math.log(k)


def importance_log_weights(encode_fn: EncodeFn, decode_fn: DecodeFn,
                           log_likelihood_fn: LogLikelihoodFn, params, x: jax.Array,
                           keys: jax.Array, num_samples: int):
  """K importance samples z_k ~ q(z|x) per example, and what the bounds need.

  log w_k = log p(x|z_k) + log N(z_k; 0, I) - log q(z_k|x); sample k of an example is
  drawn from fold_in(key, k), one decoder pass over the batch per k (`lax.map`).

  Args:
    encode_fn, decode_fn, log_likelihood_fn: as for `make_elbo_loss`.
    params: the network parameters.
    x: (B, H, W, C) in [-1, 1].
    keys: (B,) one key per example (e.g. `per_example_keys(rng, index)`).
    num_samples: K.
  Returns:
    (log_weights (K, B), elbo (B,), kl (B,)): the ELBO uses the closed-form KL and the
    mean of log p(x|z_k) over the K samples; `iwae_bound(log_weights)` is the IWAE_K
    bound, >= the ELBO in expectation and non-decreasing in K.
  """
  mu, logvar = encode_fn(params, x)  # (B, *latent_shape)

  def one_sample(k):
    eps = standard_normal_like(jax.vmap(jax.random.fold_in, (0, None))(keys, k),
                               mu.shape[1:])
    z = reparameterize(mu, logvar, eps)
    log_lik = log_likelihood_fn(x, decode_fn(params, z))  # (B,)
    return log_lik + log_standard_normal(z) - log_normal(z, mu, logvar), log_lik

  log_weights, log_liks = lax.map(one_sample, jnp.arange(num_samples))  # (K, B) each
  kl = kl_standard_normal(mu, logvar)
  return log_weights, jnp.mean(log_liks, axis=0) - kl, kl
