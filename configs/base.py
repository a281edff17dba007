"""Config blocks that every family shares: data, training, optim, checkpoint, sampling.

Every config file in this folder has `get_config()` that starts from `get_base_config()`
and overrides what its family needs. Every field a user may set is here or in the family
file, with a one-line comment; `--config.a.b=v` on the command line overrides it.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  """Returns the blocks shared by all families."""
  config = ml_collections.ConfigDict()
  config.family = ''  # which experiment runs this config: 'diffusion' (set by family files).
  config.seed = 0  # the one base seed; every random choice is fold_in'ed from it.

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'digits'  # 'digits' (embedded, scikit-learn) or any tfds name.
  config.data.image_size = 16  # images are resized to (image_size, image_size).
  config.data.data_dir = ''  # tfds data_dir; '' means tfds' default (~/tensorflow_datasets).
  config.data.train_split = 'train'  # split used for training.
  config.data.eval_split = 'test'  # held-out split (digits: the last 297 of 1797 images).
  config.data.random_flip = False  # random horizontal flips of training images.

  config.training = ml_collections.ConfigDict()
  config.training.batch_size = 64  # global batch over all devices and hosts.
  config.training.num_steps = 2000  # total optimizer steps.
  config.training.log_every = 50  # steps between metric lines (metrics.jsonl, TensorBoard).
  config.training.checkpoint_every = 500  # steps between checkpoints.
  config.training.sample_every = 1000  # steps between sample grids (0 disables).
  config.training.eval_every = 0  # steps between in-training evaluations (0 disables).
  config.training.keep_checkpoints = 3  # how many checkpoints to keep.
  config.training.async_checkpoints = True  # save checkpoints in a background thread.

  config.optim = ml_collections.ConfigDict()
  config.optim.optimizer = 'adam'  # 'adam' or 'adamw'.
  config.optim.lr = 2e-4  # peak learning rate.
  config.optim.warmup_steps = 100  # linear warmup from 0 to lr.
  config.optim.decay = 'constant'  # after warmup: 'constant' or 'cosine' (to 0 at num_steps).
  config.optim.b1 = 0.9  # Adam beta1.
  config.optim.b2 = 0.999  # Adam beta2.
  config.optim.eps = 1e-8  # Adam epsilon.
  config.optim.weight_decay = 0.0  # AdamW decoupled weight decay.
  config.optim.grad_clip = 1.0  # global-norm gradient clipping (0 disables).
  config.optim.ema_decay = 0.999  # EMA of parameters used for sampling (0 disables EMA).

  config.parallel = ml_collections.ConfigDict()
  # CPU only: devices to split each batch over (0: one per core, dividing the batches).
  config.parallel.cpu_devices = 0

  config.sampling = ml_collections.ConfigDict()
  config.sampling.num_samples = 64  # images per sample grid / `--mode=sample` run.
  return config
