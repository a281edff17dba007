"""The two networks and train steps of the diffusers peer benchmark (tools/diffusers_bench.py).

`--config=configs/bench_peer.py:small` or `:cifar10`; used by experiments/benchmark.py.
  small:   28x28x1, channels (32, 64, 64), 2 res blocks, attention at 7x7 (+ middle),
           dropout 0.1, GroupNorm(32); 1,623,169 parameters; batch 64.
  cifar10: the DDPM CIFAR-10 U-Net (ddpm_cifar10.py); 35,746,307 parameters; batch 16.
Train step as the peer's: AdamW(lr 2e-4, weight decay 0.01 as torch's default), no
warmup, no clipping, no EMA; linear betas, T = 1000, eps-MSE. Sampling: DDIM with
'leading' spacing and x0 clipping (diffusers' DDIMScheduler defaults).
"""

from configs import ddpm_cifar10
from experiments.diffusion import schema as diffusion_schema


def get_config(net: str = 'small'):
  if net == 'small':
    config = diffusion_schema.get_schema()
    config.data.image_size = 28
    config.model.ch = 32
    config.model.ch_mult = (1, 2, 2)
    config.model.num_res_blocks = 2
    config.model.attn_resolutions = (7,)
    config.model.dropout = 0.1
    config.model.num_groups = 32
    config.training.batch_size = 64
    channels = 1
  elif net == 'cifar10':
    config = ddpm_cifar10.get_config()
    config.training.batch_size = 16
    channels = 3
  else:
    raise ValueError(f"unknown peer net {net!r}; use 'small' or 'cifar10'.")
  config.bench_channels = channels  # image channels of the random data
  config.optim.optimizer = 'adamw'
  config.optim.lr = 2e-4
  config.optim.weight_decay = 0.01
  config.optim.warmup_steps = 0
  config.optim.grad_clip = 0.0
  config.optim.ema_decay = 0.0
  config.sampling.sampler = 'ddim'
  config.sampling.num_steps = 50
  config.sampling.eta = 0.0
  config.sampling.spacing = 'leading'
  config.sampling.clip_x0 = True
  config.sampling.num_samples = config.training.batch_size
  return config
