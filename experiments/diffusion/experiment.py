"""The diffusion family: DDPM training, DDPM/DDIM sampling, sample grids."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import base
from experiments.diffusion import checks
from experiments.diffusion import schema
from gen_jax.core import parallel
from gen_jax.core import rng_streams
from gen_jax.core.train_state import TrainState
from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.diffusion import guidance
from gen_jax.diffusion import likelihood
from gen_jax.diffusion import losses
from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules
from gen_jax.diffusion import sigma_samplers
from gen_jax.models.unet import UNet
from gen_jax.platform import viz
from gen_jax.platform.errors import UserError


# The U-Net's numerics options (experiments/diffusion/schema.py): the DDPM U-Net's by
# default, diffusers' for imported checkpoints.
UNET_OPTIONS = ('norm_eps', 'flip_sin_to_cos', 'freq_shift', 'downsample_padding',
                'attn_head_dim')


def unet_options(model_config) -> dict:
  return {k: model_config[k] for k in UNET_OPTIONS}


class DiffusionExperiment(base.SingleNetworkExperiment):
  """Builds the U-Net, schedule, loss, train step and samplers from a config.

  Args:
    config: the run's config.
    mesh: the device mesh.
    image_shape: (H, W, C) of the data; given, no dataset is loaded (benchmarks with
      random data), else it is read off the training split.
    train_data: the training set, if not `data.train_split` of `data.dataset` (latent
      diffusion passes encoded latents).
  """

  RESUMABLE_FIELDS = schema.RESUMABLE_FIELDS
  RENAMED = schema.RENAMED

  # The seed too: it is only the state's base key and the batch order, both per trial.
  VMAP_FIELDS = ('seed',) + base.SingleNetworkExperiment.VMAP_FIELDS

  def __init__(self, config, mesh, image_shape: tuple[int, int, int] | None = None,
               train_data: arrays.ArrayDataset | None = None):
    # Before any data is loaded: the U-Net's input side is the given shape's, else the data's.
    side = (image_shape[0] if image_shape is not None else
            train_data.image_shape[0] if train_data is not None else -1)
    checks.validate(config, side)
    self.config = config
    self.mesh = mesh
    self._train_data = train_data
    if image_shape is None:
      if self._train_data is None:
        self._train_data = datasets.load_train_data(config.data)
      image_shape = self._train_data.image_shape
    self.image_shape = tuple(image_shape)  # (H, W, C)
    d = config.diffusion
    self.num_classes = 0
    if d.class_conditional:
      if self._train_data is None:
        raise ValueError('class conditioning needs the dataset (for its classes).')
      self.num_classes = self._train_data.num_classes
      if self.num_classes < 2:
        raise UserError(f'diffusion.class_conditional needs labelled data; '
                        f'{config.data.dataset!r} has {self.num_classes} classes.')
      if not -1 <= config.sampling.class_label < self.num_classes:
        raise UserError(f'sampling.class_label must be -1 (all classes) or in '
                        f'[0, {self.num_classes - 1}], not {config.sampling.class_label}.')
    m = config.model
    self.model = UNet(ch=m.ch, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
                      attn_resolutions=tuple(m.attn_resolutions), dropout=m.dropout,
                      num_groups=m.num_groups, out_channels=self.image_shape[-1],
                      resample_with_conv=m.resample_with_conv,
                      num_classes=self.num_classes, dtype=jnp.dtype(m.dtype),
                      **unet_options(m))
    self.schedule = schedules.make_schedule(d.schedule, d.num_timesteps, d.beta_start,
                                            d.beta_end)
    self.build_optimizer()
    self.loss_fn = losses.make_diffusion_loss(
        self._model_fn, self.schedule, d.prediction,
        label_drop_prob=d.cond_drop_prob if self.num_classes else 0.0,
        null_label=self.num_classes)

  # --- model -------------------------------------------------------------------------
  def _model_fn(self, params, x_t, t, batch, rng):
    y = batch['label'] if self.num_classes else None
    return self.model.apply(params, x_t, t, y, train=True, rngs={'dropout': rng})

  def init_params(self, rng):
    x = jnp.zeros((1,) + self.image_shape, jnp.float32)
    return self.model.init(rng, x, jnp.zeros((1,), jnp.int32))

  def finalize_metrics(self, metrics):
    return losses.finalize_quarter_metrics(metrics)

  # --- sampling ----------------------------------------------------------------------
  makes_images = True  # evaluation scores samples with image features

  @functools.lru_cache(maxsize=4)
  def sampler(self, num_samples: int):
    """The config's sampler for num_samples samples, compiled over the devices.

    Returns:
      jit(shard_map((params, rng replicated, labels (N,) sharded) -> samples (N, H, W, C)
      sharded)); benchmarks lower and time it.
    """
    parallel.check_divisible(num_samples, 'sampling.num_samples', self.mesh)
    per_device_n = num_samples // self.mesh.devices.size
    cfg = self.config

    scale = cfg.sampling.guidance_scale

    def per_device(params, rng, labels):  # labels: (n,) this device's share
      def conditional(x, t, y):
        return self.model.apply(params, x, t, y if self.num_classes else None, train=False)

      if self.num_classes and scale != 0:
        denoise = lambda x, t: guidance.guided(conditional, x, t, labels, self.num_classes,
                                               scale)
      else:
        denoise = lambda x, t: conditional(x, t, labels)
      return samplers.sample(denoise, self.schedule, (per_device_n,) + self.image_shape,
                             parallel.device_rng(rng), cfg.sampling, cfg.diffusion.prediction)

    return parallel.map_per_device(
        per_device, self.mesh,
        in_specs=(parallel.REPLICATED, parallel.REPLICATED, parallel.SHARDED),
        out_specs=parallel.SHARDED)

  def sample_labels(self, num_samples: int) -> np.ndarray:
    """Class of each sample: `sampling.class_label`, or balanced rows of classes."""
    if not self.num_classes:
      return np.zeros((num_samples,), np.int32)
    if self.config.sampling.class_label >= 0:
      return np.full((num_samples,), self.config.sampling.class_label, np.int32)
    return np.asarray(guidance.balanced_labels(num_samples, self.num_classes))

  def generate(self, params, num_samples: int, rng, labels=None) -> np.ndarray:
    """num_samples samples (N, H, W, C) of the data space, split over all devices."""
    labels = self.sample_labels(num_samples) if labels is None else labels
    rng = parallel.replicate(jax.device_get(rng), self.mesh)
    labels = parallel.shard_host_array(np.asarray(labels, np.int32), self.mesh)
    samples = self.sampler(num_samples)(params, rng, labels)
    return parallel.global_to_host(samples)

  def to_images(self, state: TrainState, samples: np.ndarray) -> np.ndarray:
    """Samples of the data space -> images in [-1, 1] (identity up to clipping here)."""
    del state
    return np.clip(samples, -1.0, 1.0)

  def nfe(self) -> int:
    """Network evaluations per sample of the config's sampler."""
    return samplers.num_evaluations(self.config.sampling, self.config.diffusion.num_timesteps)

  def sampler_name(self) -> str:
    s = self.config.sampling
    if s.sampler in sigma_samplers.SAMPLERS:
      name = f'{s.sampler}{s.num_steps}'
      if s.sigma_schedule == 'karras':
        name += '_karras'
      if s.s_churn:
        name += f'_churn{s.s_churn:g}'
      name += f'_nfe{self.nfe()}'
    else:
      name = (f'ddim{s.num_steps}_eta{s.eta:g}' if s.sampler == 'ddim'
              else f'ddpm{self.config.diffusion.num_timesteps}')
    if self.num_classes:
      name += f'_w{s.guidance_scale:g}'
      if s.class_label >= 0:
        name += f'_class{s.class_label}'
    return name

  # --- evaluation (experiments/evaluation.py) ------------------------------------------
  def eval_labels(self, num_samples: int) -> np.ndarray | None:
    """The classes evaluation samples are asked for (None: unconditional)."""
    return self.sample_labels(num_samples) if self.num_classes else None

  def sample_images(self, state: TrainState, rng, num_samples: int, labels=None,
                    use_ema: bool = True):
    """num_samples images (N, H, W, C) in [-1, 1] with the config's sampler."""
    params = state.ema_params if use_ema else state.params
    return self.to_images(state, self.generate(params, num_samples, rng, labels))

  def sampler_settings(self) -> dict:
    s, d = self.config.sampling, self.config.diffusion
    settings = {'name': self.sampler_name(), 'sampler': s.sampler,
                'steps': d.num_timesteps if s.sampler == 'ddpm' else s.num_steps,
                'nfe': self.nfe(), 'clip_x0': s.clip_x0}
    if s.dynamic_threshold:
      settings.update(dynamic_threshold=s.dynamic_threshold, threshold_max=s.threshold_max)
    if s.sampler == 'ddim':
      settings.update(eta=s.eta, spacing=s.spacing)
    elif s.sampler == 'ddpm':
      settings['variance'] = s.ddpm_variance
    else:
      settings['sigma_schedule'] = s.sigma_schedule
      if settings['sigma_schedule'] == 'karras':
        settings.update(rho=s.rho, sigma_min=s.sigma_min,
                        sigma_max=s.sigma_max)
      if s.s_churn:
        settings.update(s_churn=s.s_churn, s_tmin=s.s_tmin, s_tmax=s.s_tmax,
                        s_noise=s.s_noise)
    if self.num_classes:
      settings.update(guidance_scale=s.guidance_scale, class_label=s.class_label)
    return settings

  def _bound_terms(self, params, x0, labels, index):  # (b, H, W, C), (b,), (b,) -> (b,) each
    s, e = self.config.sampling, self.config.eval

    def denoise(x_t, t):
      return self.model.apply(params, x_t, t, labels if self.num_classes else None,
                              train=False)

    keys = parallel.per_example_keys(
        jax.random.fold_in(jax.random.PRNGKey(e.seed), rng_streams.VLB), index)
    return likelihood.variational_bound(denoise, self.schedule, x0, keys, e.vlb_strata,
                                        self.config.diffusion.prediction, s.clip_x0,
                                        s.ddpm_variance)

  def evaluate(self, state: TrainState, step: int) -> dict:
    """The variational bound on the held-out split (`data.eval_split`), bits/dim.

    Returns:
      {'eval/vlb_bits_per_dim' (total), 'eval/vlb_prior_bits_per_dim' (L_T),
       'eval/vlb_decoder_bits_per_dim' (L_0)} for 8-bit data, EMA parameters (or raw
       with eval.use_ema=False), `eval.vlb_strata` stratified timesteps per image.
    """
    del step
    e = self.config.eval
    held_out = self._held_out()
    n = len(held_out)
    chunk = min(e.batch_size, n)
    params = state.ema_params if e.use_ema else state.params
    index = np.arange(n, dtype=np.int32)
    terms = self._rows.in_chunks(self._bound_terms, params, held_out.images, held_out.labels,
                                 index, chunk=chunk)
    per_dim = float(np.prod(self.image_shape)) * np.log(2.0)
    mean = lambda k: float(terms[k].astype(np.float64).mean())
    return {'eval/vlb_bits_per_dim': mean('total') / per_dim,
            'eval/vlb_prior_bits_per_dim': mean('prior') / per_dim,
            'eval/vlb_decoder_bits_per_dim': mean('decoder') / per_dim}

  @functools.cached_property
  def _rows(self):
    return parallel.RowMapper(self.mesh)

  def _held_out(self) -> arrays.ArrayDataset:
    """`data.eval_split`, cut to `eval.held_out_examples` if set."""
    return datasets.load_held_out(self.config.data, self.config.eval.held_out_examples)

  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> list:
    """Samples with the EMA parameters; writes a PNG grid and an .npz (process 0)."""
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, step), rng_streams.SAMPLE_GRID)
    n = self.config.sampling.num_samples
    labels = self.sample_labels(n)
    samples = self.generate(state.ema_params, n, rng, labels)
    images = self.to_images(state, samples)
    base = os.path.join(workdir, 'samples', f'{prefix}_step{step:07d}_{self.sampler_name()}')
    if jax.process_index() == 0:
      # A class grid has one row per class.
      ncols = n // self.num_classes if self.num_classes and n % self.num_classes == 0 else None
      viz.save_grid(base + '.png', images, ncols=ncols)
      arrays = {'images': images.astype(np.float32), 'labels': labels}
      if samples.shape != images.shape:
        arrays['latents'] = samples.astype(np.float32)
      np.savez_compressed(base + '.npz', **arrays)
      print(f'wrote {base}.png ({len(images)} samples, {self.nfe()} network evaluations '
            f'each)', flush=True)
    return [base + '.png', base + '.npz']


def load_denoiser(workdir: str, ema: bool = True):
  """The network of a diffusion workdir (trained or imported) as one function.

  Args:
    workdir: a diffusion run's directory (config.json and checkpoints/).
    ema: use the EMA parameters (False: the raw ones) of the latest checkpoint.
  Returns:
    f(x, t) -> out: x (B, H, W, C) float32 images in [-1, 1], t (B,) integer timesteps
    0..T-1; out (B, H, W, C) float32, the raw network output (eps, x0 or v, as the run's
    `diffusion.prediction` says). Compiled once per input shape. A class-conditional run
    is evaluated with its null class (the unconditional network).
  Raises:
    UserError: no diffusion run or no checkpoint in `workdir`.
  """
  import experiments  # pylint: disable=g-import-not-at-top
  from gen_jax.platform import checkpoint  # pylint: disable=g-import-not-at-top
  from gen_jax.core import trainer  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  config = experiments.read_run_config(workdir, 'diffusion', field='workdir')
  image_shape = None  # a conditional run reads its classes off the dataset
  if not config.diffusion.class_conditional:  # the image channels from the checkpoint
    ckpt = checkpoint.Checkpointer(workdir, async_save=False)
    try:
      in_kernel = ckpt.saved_shapes()['params/params/conv_in/kernel']  # (3, 3, C, ch)
    finally:
      ckpt.close()
    image_shape = (config.data.image_size, config.data.image_size, in_kernel[2])
  experiment = DiffusionExperiment(config, parallel.make_mesh(), image_shape=image_shape)
  state = trainer.restore_latest(experiment, workdir)
  params = state.ema_params if ema else state.params
  apply = jax.jit(lambda p, x, t: experiment.model.apply(p, x, t, train=False))
  return lambda x, t: apply(params, jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.int32))


# The family's Experiment, as the registry (experiments/__init__.py) finds it.
EXPERIMENT = DiffusionExperiment
