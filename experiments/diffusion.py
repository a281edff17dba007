"""The diffusion family: DDPM training, DDPM/DDIM sampling, sample grids."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import base
from gen_jax import data
from gen_jax import optim
from gen_jax import parallel
from gen_jax import viz
from gen_jax.diffusion import guidance
from gen_jax.diffusion import losses
from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules
from gen_jax.errors import UserError
from gen_jax.models.unet import UNet
from gen_jax.train_state import TrainState


def validate(config) -> None:
  """One-line errors for values the code below would otherwise trip over deep inside."""
  d, s, m = config.diffusion, config.sampling, config.model
  checks = [
      (d.schedule in schedules.SCHEDULES, f'diffusion.schedule must be one of '
       f'{schedules.SCHEDULES}, not {d.schedule!r}'),
      (d.prediction in schedules.PREDICTIONS, f'diffusion.prediction must be one of '
       f'{schedules.PREDICTIONS}, not {d.prediction!r}'),
      (d.num_timesteps >= 2, f'diffusion.num_timesteps must be >= 2, not {d.num_timesteps}'),
      (s.sampler in ('ddpm', 'ddim'), f"sampling.sampler must be 'ddpm' or 'ddim', "
       f'not {s.sampler!r}'),
      (s.sampler != 'ddim' or 1 <= s.num_steps <= d.num_timesteps,
       f'sampling.num_steps must be in [1, {d.num_timesteps}], not {s.num_steps}'),
      (s.spacing in samplers.SPACINGS, f'sampling.spacing must be one of '
       f'{samplers.SPACINGS}, not {s.spacing!r}'),
      (s.ddpm_variance in ('small', 'large'), f"sampling.ddpm_variance must be 'small' "
       f"or 'large', not {s.ddpm_variance!r}"),
      (0.0 <= s.eta <= 1.0, f'sampling.eta must be in [0, 1], not {s.eta}'),
      (all(m.ch * k % m.num_groups == 0 for k in m.ch_mult),
       f'model.num_groups={m.num_groups} must divide every level\'s channels '
       f'{[m.ch * k for k in m.ch_mult]}'),
  ]
  for ok, message in checks:
    if not ok:
      raise UserError(message + '.')
  size = config.data.image_size
  if size % 2 ** (len(m.ch_mult) - 1):
    raise UserError(f'data.image_size={size} must divide by 2^(len(model.ch_mult)-1)='
                    f'{2 ** (len(m.ch_mult) - 1)} for the U-Net to downsample it.')


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

  def __init__(self, config, mesh, image_shape: tuple[int, int, int] | None = None,
               train_data: data.ArrayDataset | None = None):
    validate(config)
    self.config = config
    self.mesh = mesh
    self._train_data = train_data
    if image_shape is None:
      if self._train_data is None:
        self._train_data = data.load_dataset(config.data, config.data.train_split)
      image_shape = self._train_data.images.shape[1:]
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
                      num_classes=self.num_classes)
    self.schedule = schedules.make_schedule(d.schedule, d.num_timesteps, d.beta_start,
                                            d.beta_end)
    self.optimizer, self.lr_schedule = optim.make_optimizer(config.optim,
                                                            config.training.num_steps)
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
  @functools.lru_cache(maxsize=4)
  def _sampler(self, num_samples: int):
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
    samples = self._sampler(num_samples)(params, rng, labels)
    return parallel.global_to_host(samples)

  def to_images(self, state: TrainState, samples: np.ndarray) -> np.ndarray:
    """Samples of the data space -> images in [-1, 1] (identity up to clipping here)."""
    del state
    return np.clip(samples, -1.0, 1.0)

  def sampler_name(self) -> str:
    s = self.config.sampling
    name = (f'ddim{s.num_steps}_eta{s.eta:g}' if s.sampler == 'ddim'
            else f'ddpm{self.config.diffusion.num_timesteps}')
    if self.num_classes:
      name += f'_w{s.guidance_scale:g}'
      if s.class_label >= 0:
        name += f'_class{s.class_label}'
    return name

  def write_samples(self, state: TrainState, step: int, workdir: str, prefix: str) -> list:
    """Samples with the EMA parameters; writes a PNG grid and an .npz (process 0)."""
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, step), 1)  # not a training key
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
      print(f'wrote {base}.png ({len(images)} samples)', flush=True)
    return [base + '.png', base + '.npz']
