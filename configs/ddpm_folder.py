"""A 64x64 DDPM on your own images: any folder of PNG / JPEG files, read with grain.

    python launch.py --config=configs/ddpm_folder.py --workdir=runs/my_images \
        --config.data.dataset=folder:/path/to/images

Every image under the folder (subfolders included) is decoded, its shorter side resized
to 64 (antialiased bilinear), center-cropped and flipped at random, in
`data.num_workers` grain worker processes. Class labels from the subfolder names:
`--config.data.labels_from_subfolders=True --config.diffusion.class_conditional=True`.
Sized for a GPU / TPU; on a CPU try it first with a small model (docs/data.md, "Train on
your own images").
"""

from experiments.diffusion import schema as diffusion_schema


def get_config():
  config = diffusion_schema.get_schema()
  config.data.dataset = 'folder:images'  # set to folder:/path/to/your/images
  config.data.image_size = 64
  config.data.random_flip = True
  config.data.loader = 'grain'  # record by record: any folder size, decoded in workers
  config.data.num_workers = 2
  config.data.eval_split = 'train'  # a folder has one split: the bound is on its images

  config.model.ch = 64
  config.model.ch_mult = (1, 2, 2, 4)  # 64 -> 32 -> 16 -> 8
  config.model.num_res_blocks = 2
  config.model.attn_resolutions = (16,)
  config.model.dropout = 0.1
  config.model.num_groups = 32

  config.diffusion.schedule = 'cosine'
  config.diffusion.num_timesteps = 1000

  config.training.batch_size = 64
  config.training.num_steps = 100_000
  config.training.log_every = 100
  config.training.checkpoint_every = 5000
  config.training.sample_every = 10_000
  config.optim.lr = 2e-4
  config.optim.warmup_steps = 1000
  config.optim.ema_decay = 0.9999

  config.sampling.sampler = 'ddim'  # 100 DDIM steps for the grids; 'ddpm' for all 1000
  config.sampling.num_steps = 100
  config.sampling.num_samples = 64

  config.eval.feature_extractor = 'inception'  # set eval.inception_weights (README)
  config.eval.floor = False  # no held-out split to set beside the training images
  return config
