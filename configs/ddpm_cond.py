"""Class-conditional DDPM on digits with classifier-free guidance: one grid row per class.

    python launch.py --config=configs/ddpm_cond.py --workdir=runs/ddpm_cond
    python launch.py --config=configs/ddpm_cond.py --workdir=runs/ddpm_cond --mode=sample \
        --config.sampling.guidance_scale=3 [--config.sampling.class_label=3]
"""

from configs import ddpm


def get_config():
  config = ddpm.get_config()
  config.diffusion.class_conditional = True
  config.diffusion.cond_drop_prob = 0.1
  config.sampling.sampler = 'ddim'  # 50 DDIM steps keep guided grids quick on a CPU
  config.sampling.num_steps = 50
  config.sampling.num_samples = 100  # a 10 x 10 grid: row r is digit r
  config.sampling.guidance_scale = 1.0
  config.training.num_steps = 1500
  config.training.checkpoint_every = 500
  config.training.sample_every = 1500
  # 16x16, as before the DDPM default moved to 8x8 (issue 19).
  config.data.image_size = 16
  config.eval.image_size = 0
  return config
