"""The GAN family: DCGAN / conditional GAN on images, MLP GAN on the 2-d ring8 toy.

One compiled, per-device step plays the game: `gan.d_steps` discriminator updates, each
on fresh z, then one generator update, each player with its own optax optimizer and
learning rate (TTUR). Both go through `train_state.gradient_update`, so gradients,
metrics and non-trained state (G's BatchNorm statistics, D's spectral-norm vectors) are
averaged over devices; BatchNorm itself averages its batch statistics over the `data`
axis, so 8 devices train exactly like 1.

State layout: params / opt_state = {'generator': ..., 'discriminator': ...};
model_state = {'generator': {'batch_stats': ...}, 'discriminator': {'spectral': ...}}
(entries only where a player has such variables); ema_params = the generator's EMA,
which all samples and evaluations use (the live generator when optim.ema_decay = 0).

Architectures (`model.arch`): 'dcgan' for images of side 4 * 2^k; 'biggan' (Brock et al.
2019, gen_jax.models.biggan) for images of side 4 * 2^len(model.g_ch_mults); 'mlp' for any
data, and the only choice for `data.dataset='ring8'`, whose samples are (N, 2) points that
`evaluate` scores for mode coverage (`gen_jax.data.toy_data.ring_metrics`).

Unconditional models may still give G (and D) a class input: `gan.cluster_classes` = K
conditions both players on k-means clusters of the training images (a self-conditioned GAN,
Liu et al. 2020: the clusters take the labels' place, and samples draw a cluster in
proportion to its size); `gan.latent_classes` = K feeds G alone a uniform random code. No
label is read in either.

G's BatchNorm statistics at sample time (`gan.sample_bn_stats`): 'running', the running
averages kept by the live generator during training; or 'standing' (BigGAN), the
average of the batch statistics of the sampled generator (EMA weights) itself over
`gan.standing_batches` batches of training.batch_size fresh (truncated) latents,
recomputed for each state that samples.
"""

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import sklearn.cluster

from experiments.gan import checks
from experiments.gan import schema
from gen_jax.core import family
from gen_jax.core import optim
from gen_jax.core import parallel
from gen_jax.core import rng_streams
from gen_jax.core.parallel import per_example_keys
from gen_jax.core.train_state import TrainState, ema_update, gradient_update
from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.data import toy_data
from gen_jax.models import biggan
from gen_jax.models import dcgan
from gen_jax.objectives import gan
from gen_jax.platform import viz
from gen_jax.platform.errors import UserError


PLAYERS = ('generator', 'discriminator')


# Folded into a player step's key for its fakes' latent codes (z is drawn from the key itself).
LATENT_CODE_STREAM = 0xC0DE


def sample_latents(rng: jax.Array, num: int, z_dim: int, truncation: float = 0.0,
                   start: int = 0) -> np.ndarray:
  """Latent codes z_i ~ N(0, I) for i = start..start+num-1, each from fold_in(rng, i).

  With `truncation` > 0 (the BigGAN truncation trick), every coordinate with
  |z| > truncation is redrawn until it is not; that is the standard normal conditioned
  on [-truncation, truncation], which `jax.random.truncated_normal` samples directly.

  Returns:
    (num, z_dim) float32.
  """
  keys = per_example_keys(rng, jnp.arange(start, start + num))  # (num,) keys
  if truncation > 0:
    draw = lambda k: jax.random.truncated_normal(k, -truncation, truncation, (z_dim,))
  else:
    draw = lambda k: jax.random.normal(k, (z_dim,))
  return np.asarray(jax.vmap(draw)(keys), np.float32)


def _apply(module, params, state: dict, update: bool, *args, **kwargs):
  """module.apply -> (output, state), the state's collections updated when `update`."""
  variables = {'params': params, **state}
  if update and state:
    output, new_state = module.apply(variables, *args, mutable=list(state), **kwargs)
    return output, dict(new_state)
  return module.apply(variables, *args, **kwargs), state


class GANExperiment(family.Experiment):
  """Builds both players, their optimizers, the alternating step, samples and metrics."""

  RESUMABLE_FIELDS = schema.RESUMABLE_FIELDS
  RENAMED = schema.RENAMED

  # The rates and the EMA decay reach the step as `hparams` (gen_jax.core.family); the seed is
  # only the state's base key and batch order.
  VMAP_FIELDS = ('seed', 'optim.g_lr', 'optim.d_lr', 'optim.ema_decay')
  # Each player's loss, and the norm of both gradients together.
  WATCHED_METRICS = ('d_loss', 'g_loss', 'grad_norm')
  SHOWN_METRICS = WATCHED_METRICS

  def __init__(self, config, mesh):
    checks.validate(config)
    self.config = config
    self.mesh = mesh
    self._train_data = datasets.load_train_data(config.data)
    if config.gan.cluster_classes:
      self._train_data = self._clustered(self._train_data, config.gan.cluster_classes)
    self.sample_shape = self._train_data.image_shape  # (H, W, C) or (2,)
    self.is_points = config.data.dataset == 'ring8'
    self.image_shape = None if self.is_points else tuple(self.sample_shape)
    g, m = config.gan, config.model
    self.clustered = bool(g.cluster_classes)
    self.num_classes = self._train_data.num_classes if g.conditional or self.clustered else 0
    if g.conditional and self.num_classes < 2:
      raise UserError(f'gan.conditional needs a labelled dataset; {config.data.dataset!r} '
                      f'has {self._train_data.num_classes} classes.')
    if g.conditional and config.sampling.num_samples < self.num_classes:
      raise UserError(f'sampling.num_samples={config.sampling.num_samples} must be at least '
                      f'the {self.num_classes} classes (balanced samples).')
    # What G's class input takes: the labels (conditional) or the clusters
    # (gan.cluster_classes), both D's too; or a uniformly random code of
    # gan.latent_classes values that D never sees; or nothing.
    self.g_classes = self.num_classes or g.latent_classes
    if m.arch == 'dcgan':
      if len(self.sample_shape) != 3:
        raise UserError(f"model.arch='dcgan' needs images; {config.data.dataset!r} has "
                        f"samples of shape {self.sample_shape}.")
      self.generator = dcgan.DCGANGenerator(
          image_size=self.sample_shape[0], channels=self.sample_shape[-1], ch=m.g_ch,
          num_classes=self.g_classes, embed_dim=m.embed_dim, bn_momentum=m.bn_momentum,
          axis_name=parallel.DATA_AXIS, init_scheme=m.init)
      self.discriminator = dcgan.DCGANDiscriminator(
          image_size=self.sample_shape[0], ch=m.d_ch, num_classes=self.num_classes,
          spectral_norm=g.spectral_norm, init_scheme=m.init, norm=m.d_norm,
          axis_name=parallel.DATA_AXIS)
    elif m.arch == 'biggan':
      if len(self.sample_shape) != 3:
        raise UserError(f"model.arch='biggan' needs images; {config.data.dataset!r} has "
                        f"samples of shape {self.sample_shape}.")
      self.generator = biggan.BigGANGenerator(
          channels=self.sample_shape[-1], ch=m.g_ch, ch_mults=tuple(m.g_ch_mults),
          num_classes=self.num_classes, shared_dim=m.shared_dim,
          hierarchical=m.hierarchical, attn_res=m.g_attn, bn_momentum=m.bn_momentum,
          bn_epsilon=m.bn_epsilon, axis_name=parallel.DATA_AXIS, init_scheme=m.init)
      self.discriminator = biggan.BigGANDiscriminator(
          ch=m.d_ch, ch_mults=tuple(m.d_ch_mults), num_down=m.d_num_down,
          num_classes=self.num_classes, attn_res=m.d_attn, init_scheme=m.init)
    else:
      self.generator = dcgan.MLPGenerator(
          out_shape=tuple(self.sample_shape), hidden=m.hidden, layers=m.layers,
          num_classes=self.g_classes, embed_dim=m.embed_dim,
          tanh=not self.is_points, init_scheme=m.init)
      self.discriminator = dcgan.MLPDiscriminator(
          hidden=m.hidden, layers=m.layers, num_classes=self.num_classes,
          spectral_norm=g.spectral_norm, init_scheme=m.init)
    # One transformation serves both players: each passes its own peak rate.
    self.optimizer = optim.make_optimizer(config.optim, config.training.num_steps)
    self.d_loss_fn = gan.make_discriminator_loss(self._discriminate, g.loss, g.r1_gamma)

  def _clustered(self, dataset, k: int):
    """The training set with its labels replaced by k-means clusters of its images
    (gan.cluster_classes; seeded by the config's seed), and the clusters' frequencies."""
    if not isinstance(dataset, arrays.ArrayDataset) or len(dataset) < k:
      raise UserError(f'gan.cluster_classes={k} needs an in-memory data set of at least {k} '
                      f"images (data.loader='memory'); set gan.cluster_classes=0.")
    # scikit-learn's Lloyd k-means from a k-means++ start; tol=0 runs it to a fixed point,
    # where every image is in the cluster of its nearest cluster mean.
    kmeans = sklearn.cluster.KMeans(n_clusters=k, n_init=1, tol=0.0,
                                    random_state=self.config.seed)
    ids = kmeans.fit_predict(dataset.images.reshape(len(dataset), -1).astype(np.float64))
    ids = ids.astype(np.int32)  # (N,)
    self.cluster_freq = np.bincount(ids, minlength=k) / len(ids)  # (k,)
    return dataclasses.replace(dataset, labels=ids, num_classes=k)

  # --- the players --------------------------------------------------------------------
  def _class_weights(self, labels: jax.Array) -> jax.Array:
    """(B,) labels -> (B, K) one-hot rows of D's classes (K = 1, unused, if unconditional)."""
    return jax.nn.one_hot(labels, max(self.num_classes, 1))

  def _g_weights(self, labels: jax.Array) -> jax.Array:
    """(B,) labels or latent codes -> (B, K) one-hot rows of G's class input (K = 1,
    unused, for an unconditional G without gan.latent_classes)."""
    return jax.nn.one_hot(labels, max(self.g_classes, 1))

  def _fake_class_weights(self, rng, batch) -> jax.Array:
    """G's class input (B, K) for a training batch's fakes: the real batch's labels, or
    with gan.latent_classes a uniform code per example, keyed by its batch position."""
    if not self.config.gan.latent_classes:
      return self._g_weights(batch['label'])
    keys = per_example_keys(jax.random.fold_in(rng, LATENT_CODE_STREAM), batch['index'])
    codes = jax.vmap(lambda k: jax.random.randint(k, (), 0, self.g_classes))(keys)  # (B,)
    return self._g_weights(codes)

  def _generate(self, params, state, z, class_weights, train: bool):
    """G(z, y) -> (samples, new state); BatchNorm uses batch statistics when training."""
    return _apply(self.generator, params, state, train, z, class_weights, train=train)

  def _discriminate(self, params, state, x, class_weights, update_stats: bool):
    """D(x, y) -> (logits (B,), new state); power iteration advances with update_stats."""
    return _apply(self.discriminator, params, state, update_stats, x, class_weights,
                  update_stats=update_stats)

  def _latents(self, rng, index):
    """Per-example z (B, Z) from each example's global batch position (device-count free)."""
    keys = per_example_keys(rng, index)
    return jax.vmap(lambda k: jax.random.normal(k, (self.config.model.z_dim,)))(keys)

  def init_state(self, rng) -> TrainState:
    cw = self._class_weights(jnp.zeros((1,), jnp.int32))
    z = jnp.zeros((1, self.config.model.z_dim), jnp.float32)
    g_vars = self.generator.init(jax.random.fold_in(rng, 0), z,
                                 self._g_weights(jnp.zeros((1,), jnp.int32)), train=False)
    x = jnp.zeros((1,) + tuple(self.sample_shape), jnp.float32)
    d_vars = self.discriminator.init(jax.random.fold_in(rng, 1), x, cw, update_stats=False)
    params = {'generator': g_vars['params'], 'discriminator': d_vars['params']}
    model_state = {name: {k: v for k, v in variables.items() if k != 'params'}
                   for name, variables in zip(PLAYERS, (g_vars, d_vars))}
    return TrainState(
        step=jnp.zeros((), jnp.int32), rng=rng, params=params,
        opt_state={'generator': self.optimizer.init(params['generator']),
                   'discriminator': self.optimizer.init(params['discriminator'])},
        ema_params=params['generator'],
        model_state={name: s for name, s in model_state.items() if s})

  # --- training -----------------------------------------------------------------------
  def train_batches(self):
    return datasets.train_source(self._train_data, self.config)

  def _learning_rate(self, hparams, player: str, step):
    """A player's scheduled learning rate at `step`, from its peak rate in `hparams`."""
    peak = hparams['optim.g_lr' if player == 'generator' else 'optim.d_lr']
    return optim.learning_rate_schedule(self.config.optim, self.config.training.num_steps,
                                        peak)(step)

  def discriminator_step(self, state: TrainState, batch, rng, hparams):
    """One D update on the real batch and fakes from fresh z; G is untouched (per device).

    Returns:
      (state, metrics of `gan.make_discriminator_loss` plus loss and grad_norm).
    """
    g_state = state.model_state.get('generator', {})
    # Fakes get the real batch's labels (conditional) or random latent codes, which an
    # unconditional D ignores.
    fake_weights = self._fake_class_weights(rng, batch)
    fake, _ = self._generate(state.params['generator'], g_state,
                             self._latents(rng, batch['index']), fake_weights, True)
    d_batch = {'image': batch['image'], 'fake': fake,
               'class_weights': self._class_weights(batch['label']),
               'fake_class_weights': fake_weights}
    params, opt_state, metrics, d_state = gradient_update(
        self.d_loss_fn, self.optimizer, state.params['discriminator'],
        state.opt_state['discriminator'], d_batch, rng, has_state=True,
        model_state=state.model_state.get('discriminator', {}), peak_lr=hparams['optim.d_lr'])
    return self._replace_player(state, 'discriminator', params, opt_state, d_state), metrics

  def generator_step(self, state: TrainState, batch, rng, hparams):
    """One G update against the current D, on fresh z; D is untouched (per device).

    Returns:
      (state, metrics: g_loss, loss, grad_norm).
    """
    g_loss_fn = gan.make_generator_loss(
        self._generate, self._discriminate, state.params['discriminator'],
        state.model_state.get('discriminator', {}), self.config.gan.loss,
        ortho_beta=self.config.gan.ortho_reg, ortho_exclude=('shared',))
    g_batch = {'z': self._latents(rng, batch['index']),
               'fake_class_weights': self._fake_class_weights(rng, batch)}
    params, opt_state, metrics, g_state = gradient_update(
        g_loss_fn, self.optimizer, state.params['generator'], state.opt_state['generator'],
        g_batch, rng, has_state=True, model_state=state.model_state.get('generator', {}),
        peak_lr=hparams['optim.g_lr'])
    return self._replace_player(state, 'generator', params, opt_state, g_state), metrics

  @staticmethod
  def _replace_player(state: TrainState, player: str, params, opt_state, model_state):
    """`state` with one player's params, optimizer state and model state replaced."""
    others = {k: v for k, v in state.model_state.items() if k != player}
    return state.replace(params={**state.params, player: params},
                         opt_state={**state.opt_state, player: opt_state},
                         model_state={**others, **({player: model_state} if model_state else {})})

  def train_step(self, state: TrainState, batch, rng, hparams):
    """gan.d_steps D updates (fresh z each), then one G update, then G's EMA; per device."""
    cfg = self.config.gan
    step = state.step
    for i in range(cfg.d_steps):
      state, d_metrics = self.discriminator_step(state, batch, jax.random.fold_in(rng, i),
                                                 hparams)
    state, g_metrics = self.generator_step(state, batch, jax.random.fold_in(rng, cfg.d_steps),
                                           hparams)
    ema_decay = hparams['optim.ema_decay']
    if self.config.optim.ema_start > 0:  # BigGAN: the EMA copies G until ema_start
      ema_decay = jnp.where(step >= self.config.optim.ema_start, ema_decay, 0.0)
    ema = ema_update(state.ema_params, state.params['generator'], ema_decay, step)
    metrics = {
        'grad_norm': jnp.hypot(d_metrics['grad_norm'], g_metrics['grad_norm']),
        'd_loss': d_metrics['d_loss'], 'g_loss': g_metrics['g_loss'],
        'd_real': d_metrics['d_real'], 'd_fake': d_metrics['d_fake'],
        'd_grad_norm': d_metrics['grad_norm'], 'g_grad_norm': g_metrics['grad_norm'],
        'g_lr': self._learning_rate(hparams, 'generator', step),
        'd_lr': self._learning_rate(hparams, 'discriminator', step)}
    if cfg.r1_gamma > 0:
      metrics['r1'] = d_metrics['r1']
    if cfg.ortho_reg > 0:
      metrics['g_ortho'] = g_metrics['g_ortho']
    return state.replace(ema_params=ema), metrics

  # --- sampling -----------------------------------------------------------------------
  @functools.cached_property
  def _rows(self):
    return parallel.RowMapper(self.mesh)

  def _generate_rows(self, params_and_state, z, class_weights):  # per device: (b, Z), (b, K)
    params, g_state = params_and_state
    return self._generate(params, g_state, z, class_weights, train=False)[0]

  def generate(self, state: TrainState, z: np.ndarray, class_weights: np.ndarray,
               use_ema: bool = True) -> np.ndarray:
    """Samples of the EMA generator (or the live one) (N, ...) for z (N, Z) and class
    weights (N, K).

    Any N (`parallel.RowMapper` splits it over the devices). All processes call it.
    """
    params = state.ema_params if use_ema else state.params['generator']
    g_state = state.model_state.get('generator', {})
    if self.config.gan.sample_bn_stats == 'standing':
      g_state = {**g_state, 'batch_stats': self.standing_stats(state, use_ema)}
    return np.asarray(self._rows(self._generate_rows, (params, g_state),
                                 np.asarray(z, np.float32),
                                 np.asarray(class_weights, np.float32)))

  @functools.cached_property
  def _standing_stats_fn(self):
    """jit(shard_map): G's batch statistics averaged over batches (per device: z and class
    weights (b, num_batches, ...)); BatchNorm's pmean makes each batch's global."""
    # Momentum 0: the "running" statistics G writes are exactly this batch's.
    generator = self.generator.clone(bn_momentum=0.0)

    def per_device(params, g_state, z, class_weights):
      def body(total, inputs):
        _, new = generator.apply({'params': params, **g_state}, *inputs, train=True,
                                 mutable=list(g_state))
        return jax.tree.map(jnp.add, total, new['batch_stats']), None

      zero = jax.tree.map(jnp.zeros_like, g_state['batch_stats'])
      total, _ = jax.lax.scan(body, zero, (z.swapaxes(0, 1), class_weights.swapaxes(0, 1)))
      return jax.lax.pmean(jax.tree.map(lambda t: t / z.shape[1], total), parallel.DATA_AXIS)

    return parallel.map_per_device(
        per_device, self.mesh,
        in_specs=(parallel.REPLICATED, parallel.REPLICATED, parallel.SHARDED, parallel.SHARDED),
        out_specs=parallel.REPLICATED)

  def standing_stats(self, state: TrainState, use_ema: bool = True):
    """'Standing statistics' (BigGAN): G's BatchNorm batch mean and variance averaged over
    gan.standing_batches batches of training.batch_size latents (truncated as sampling)
    and random classes (clusters by their sizes, as `sample_images`); cached per
    (step, use_ema)."""
    key = (int(state.step), use_ema)
    if getattr(self, '_standing_cache', (None,))[0] == key:
      return self._standing_cache[1]
    cfg = self.config
    num, batch = cfg.gan.standing_batches, cfg.training.batch_size
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, int(state.step)),
                             rng_streams.STANDING_STATS)
    z = self._latents_for_samples(jax.random.fold_in(rng, 0), num * batch)
    labels = self._draw_labels(jax.random.fold_in(rng, 1), num * batch)  # as samples draw them
    cw = np.asarray(self._g_weights(labels), np.float32)
    # (batch, num, ...): the batch axis is split over devices, scanned over num.
    z = z.reshape(num, batch, -1).swapaxes(0, 1)
    cw = cw.reshape(num, batch, -1).swapaxes(0, 1)
    params = state.ema_params if use_ema else state.params['generator']
    stats = self._standing_stats_fn(params, state.model_state['generator'],
                                    parallel.shard_host_array(np.ascontiguousarray(z), self.mesh),
                                    parallel.shard_host_array(np.ascontiguousarray(cw), self.mesh))
    self._standing_cache = (key, stats)
    return stats

  def _latents_for_samples(self, rng, num: int) -> np.ndarray:
    return sample_latents(rng, num, self.config.model.z_dim, self.config.gan.truncation)

  def sample_balanced(self, state: TrainState, num: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """num samples and their labels (i mod K: classes, or latent codes, balanced; zeros if
    unconditional without codes)."""
    labels = np.arange(num) % max(self.g_classes, 1)
    samples = self.generate(state, self._latents_for_samples(rng, num),
                            np.asarray(self._g_weights(labels)))
    return samples, labels.astype(np.int32)

  def _interpolations(self, state: TrainState, rng) -> dict[str, np.ndarray]:
    """Strips (rows * steps, H, W, C): 'linear' and 'spherical' between random latents
    (row r of a conditional model shows class r mod K, of a latent-code model code r mod
    K), and for both 'class': from class (code) r to r+1 (mod K) at a fixed z per row."""
    rows, steps = self.config.gan.interp_rows, self.config.gan.interp_steps
    ends = self._latents_for_samples(rng, 2 * rows)  # (2 rows, Z)
    labels = np.repeat(np.arange(rows) % max(self.g_classes, 1), steps)  # (rows * steps,)
    class_weights = np.asarray(self._g_weights(labels))
    strips = {}
    for name, spherical in (('linear', False), ('spherical', True)):
      z = viz.interpolate(ends[:rows], ends[rows:], steps, spherical).reshape(rows * steps, -1)
      strips[name] = self.generate(state, z, class_weights)
    if self.g_classes:
      onehot = np.eye(self.g_classes, dtype=np.float32)
      first = np.arange(rows) % self.g_classes
      mix = viz.interpolate(onehot[first], onehot[(first + 1) % self.g_classes], steps)
      z = np.repeat(ends[:rows], steps, axis=0)  # (rows * steps, Z): fixed along a row
      strips['class'] = self.generate(state, z, mix.reshape(rows * steps, -1))
    return strips

  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> list:
    """Samples of the EMA generator: a grid (one row a class, or latent code, if
    conditional; gan.cluster_classes: clusters drawn by size, unordered) or, for
    ring8, a scatter over the modes; interpolation strips; an .npz of
    sampling.num_samples samples (and their labels). Process 0 writes."""
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, step), rng_streams.SAMPLE_GRID)
    if self.clustered:  # as the model samples: clusters by size, one plain grid
      samples = self.sample_images(state, jax.random.fold_in(rng, 0),
                                   self.config.sampling.num_samples)
      labels = None
    else:
      samples, labels = self.sample_balanced(state, self.config.sampling.num_samples,
                                             jax.random.fold_in(rng, 0))
    strips = {} if self.is_points else self._interpolations(state, jax.random.fold_in(rng, 1))
    samples_dir = os.path.join(workdir, 'samples')
    base = os.path.join(samples_dir, f'{prefix}_step{step:07d}')
    written = [base + '.png', base + '.npz']
    written += [os.path.join(samples_dir, f'interp_{name}_{prefix}_step{step:07d}.png')
                for name in strips]
    if jax.process_index() != 0:
      return written
    if self.is_points:
      metrics = toy_data.ring_metrics(samples)
      viz.save_points_scatter(
          base + '.png', samples, toy_data.ring_modes(), 3 * toy_data.RING_STD,
          title=f'step {step}: {metrics["modes_covered"]:.0f}/8 modes, '
          f'{100 * metrics["high_quality_fraction"]:.0f}% high quality')
      np.savez_compressed(base + '.npz', points=samples.astype(np.float32), labels=labels)
    else:
      if self.g_classes and labels is not None:  # row c: the first samples of class (code) c
        per_class = len(samples) // self.g_classes
        order = np.concatenate([np.flatnonzero(labels == c)[:per_class]
                                for c in range(self.g_classes)])
        viz.save_grid(base + '.png', samples[order], ncols=per_class)
      else:
        viz.save_grid(base + '.png', samples)
      np.savez_compressed(base + '.npz', images=samples.astype(np.float32),
                          **({'labels': labels} if self.eval_labels(1) is not None else {}))
      for (name, strip), path in zip(strips.items(), written[2:]):
        viz.save_grid(path, strip, ncols=self.config.gan.interp_steps)
    print(f'wrote {base}.png ({len(samples)} samples)', flush=True)
    return written

  # --- evaluation ---------------------------------------------------------------------
  @property
  def makes_images(self) -> bool:
    return not self.is_points

  def eval_labels(self, num_samples: int) -> np.ndarray | None:
    """Balanced classes (i mod K) for a conditional generator, else None (also for
    clusters, which are not the classes the evaluation's classifier knows)."""
    if not self.num_classes or self.clustered:
      return None
    return (np.arange(num_samples) % self.num_classes).astype(np.int32)

  def _draw_labels(self, rng, num: int) -> np.ndarray:
    """(num,) random labels of G's input: clusters in proportion to their sizes
    (gan.cluster_classes, the distribution the model samples), else classes (latent
    codes) uniformly; zeros for an unconditional G."""
    if self.clustered:
      return np.asarray(jax.random.choice(rng, self.num_classes, (num,),
                                          p=jnp.asarray(self.cluster_freq)))
    return np.asarray(jax.random.randint(rng, (num,), 0, max(self.g_classes, 1)))

  def sample_images(self, state: TrainState, rng, num_samples: int, labels=None,
                    use_ema: bool = True):
    """num_samples images (N, H, W, C) in [-1, 1] for z drawn from rng; an unconditional G
    with latent codes draws codes i mod gan.latent_classes (the uniform prior, balanced)."""
    if labels is None and self.clustered:  # clusters in proportion to their sizes
      labels = self._draw_labels(jax.random.fold_in(rng, LATENT_CODE_STREAM), num_samples)
    elif labels is None:
      labels = np.arange(num_samples) % max(self.g_classes, 1)
    return self.generate(state, self._latents_for_samples(rng, num_samples),
                         np.asarray(self._g_weights(labels)), use_ema)

  def sampler_settings(self) -> dict:
    return {'name': 'generator', 'truncation': self.config.gan.truncation,
            'ema_decay': self.config.optim.ema_decay}

  def evaluate(self, state: TrainState, step: int) -> dict[str, float]:
    """ring8: eval/modes_covered (of 8), eval/high_quality_fraction (within 3 std of a
    mode) and eval/largest_mode_fraction of sampling.num_samples EMA samples. Images have
    no metrics of their own (experiments/evaluation.py scores their samples)."""
    if not self.is_points:
      return {}
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, step), rng_streams.FAMILY_EVAL)
    points, _ = self.sample_balanced(state, self.config.sampling.num_samples, rng)
    return {f'eval/{k}': v for k, v in toy_data.ring_metrics(points).items()}


# The family's Experiment, as the registry (experiments/__init__.py) finds it.
EXPERIMENT = GANExperiment
