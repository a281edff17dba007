"""Quality anchor: a diffusers DDPM on scikit-learn's 8x8 digits under a CPU wall-clock budget.

What a researcher would get from Hugging Face diffusers on gen_jax's embedded digits for
the same CPU minutes. Trains a small `UNet2DModel` (`DDPMScheduler`, linear betas,
T = 1000) on the first 1200 of scikit-learn's 1797 digits for `--minutes` of wall clock,
counted from the start of the first training step (everything after that counts: batching,
optimizer, EMA, logging). Then draws `--samples` samples with DDIM (`--ddim_steps` steps,
eta 0, the scheduler defaults `DDIMPipeline` uses) from the EMA weights, writes them to
`--out` as an .npz holding one array 'samples' of shape (N, S, S) in [-1, 1], and prints
one JSON line.

Data: pixels 0..16 -> [-1, 1]; 8x8 upsampled to `--size` (default 16) with `--upsample`
(default 'nearest': a 2x2 box-downsample then recovers the training images exactly;
'bilinear' uses align_corners=False). `--size=8` trains on the raw 8x8 grid (the UNet
resolutions are then 8, 4, 2). No flips or other augmentation.

Net: `UNet2DModel`, 1 channel, block_out_channels (ch, 2ch, 2ch), `--layers` res blocks per
level, self-attention only at the lowest resolution (plus the UNet mid block), GroupNorm
groups gcd(ch, 32). AdamW (weight decay 0.01, torch's default), constant lr, EMA through
`diffusers.training_utils.EMAModel` with warm-up (decay = min(--ema_decay,
1 - (1 + step)^(-2/3))), so short runs are not dominated by the random init.

Run it in the PyTorch environment of tools/README.md (torch, diffusers, scikit-learn),
then score the samples with gen_jax's own evaluation, beside gen_jax's samples:

    python tools/diffusers_digits_anchor.py --minutes=8 --lr=1e-3 --threads=1 --out=anchor/m8.npz
    python launch.py --config=configs/ddpm.py --workdir=runs/anchor --mode=eval \\
        --config.eval.samples_file=anchor/m8.npz

torch and diffusers are imported only when the script runs, so `--help` works without them.
"""

import json
import math
import os
import sys
import time

from absl import app
from absl import flags

_MINUTES = flags.DEFINE_float('minutes', 8.0, 'Training wall-clock budget in minutes.')
_OUT = flags.DEFINE_string('out', 'digits_anchor_samples.npz', 'The samples .npz to write.')
_SEED = flags.DEFINE_integer('seed', 0, 'torch seed (training; sampling uses seed + 1).')
_LR = flags.DEFINE_float('lr', 2e-4, 'AdamW learning rate (constant).')
_CH = flags.DEFINE_integer('ch', 32, 'Base channels; the levels are (ch, 2ch, 2ch).')
_LAYERS = flags.DEFINE_integer('layers', 1, 'Res blocks per level (layers_per_block).')
_BATCH = flags.DEFINE_integer('batch', 128, 'Training batch.')
_SIZE = flags.DEFINE_enum('size', '16', ['8', '16'], 'Training resolution.')
_UPSAMPLE = flags.DEFINE_enum('upsample', 'nearest', ['nearest', 'bilinear'],
                              'How the 8x8 digits are upsampled to --size.')
_PRED = flags.DEFINE_enum('pred', 'epsilon', ['epsilon', 'sample', 'v_prediction'],
                          'Network target (the scheduler prediction_type).')
_EMA_DECAY = flags.DEFINE_float('ema_decay', 0.999, 'Largest EMA decay (warm-up below it).')
_SAMPLES = flags.DEFINE_integer('samples', 500, 'Samples to draw.')
_DDIM_STEPS = flags.DEFINE_integer('ddim_steps', 50, 'DDIM sampling steps.')
_THREADS = flags.DEFINE_integer('threads', 2, 'torch.set_num_threads.')
_LOG_EVERY = flags.DEFINE_integer('log_every', 100, 'Progress line to stderr every N steps.')


class CpuMonitor:
  """CPU used by *other* processes during a phase: /proc/stat busy ticks minus this
  process's utime + stime. foreign_cpu_cores well above ~0.1 means the phase shared the
  machine."""

  def __init__(self):
    self.hz = os.sysconf('SC_CLK_TCK')
    self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), self._own()

  @staticmethod
  def _busy():
    with open('/proc/stat') as f:
      v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # minus idle, iowait

  @staticmethod
  def _own():
    t = os.times()
    return (t.user + t.system) * os.sysconf('SC_CLK_TCK')

  def stop(self):
    dt = time.perf_counter() - self.t0
    busy, own = self._busy() - self.busy0, self._own() - self.own0
    return {'own_cpu_cores': round(own / self.hz / dt, 3),
            'foreign_cpu_cores': round(max(0.0, busy - own) / self.hz / dt, 3)}


def load_data(size: int, upsample: str):
  """The first 1200 digits in [-1, 1] at `size`, (1200, 1, size, size) torch float32."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x = load_digits().data[:1200].reshape(-1, 1, 8, 8).astype(np.float32)
  x = torch.from_numpy(x / 16.0 * 2.0 - 1.0)
  if size != 8:
    kw = {} if upsample == 'nearest' else {'align_corners': False}
    x = torch.nn.functional.interpolate(x, size=(size, size), mode=upsample, **kw)
  return x.contiguous()


def make_model(ch: int, layers: int, size: int):
  from diffusers import UNet2DModel  # pylint: disable=g-import-not-at-top
  return UNet2DModel(
      sample_size=size, in_channels=1, out_channels=1,
      block_out_channels=(ch, 2 * ch, 2 * ch),
      layers_per_block=layers,
      down_block_types=('DownBlock2D', 'DownBlock2D', 'AttnDownBlock2D'),
      up_block_types=('AttnUpBlock2D', 'UpBlock2D', 'UpBlock2D'),
      norm_num_groups=math.gcd(ch, 32),
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from diffusers import DDIMScheduler, DDPMScheduler  # pylint: disable=g-import-not-at-top
  from diffusers.training_utils import EMAModel  # pylint: disable=g-import-not-at-top

  size, pred, batch = int(_SIZE.value), _PRED.value, _BATCH.value
  torch.set_num_threads(_THREADS.value)
  torch.manual_seed(_SEED.value)
  data = load_data(size, _UPSAMPLE.value)
  n = len(data)
  model = make_model(_CH.value, _LAYERS.value, size).train()
  nparams = sum(p.numel() for p in model.parameters())
  sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', prediction_type=pred)
  opt = torch.optim.AdamW(model.parameters(), lr=_LR.value)
  ema = EMAModel(model.parameters(), decay=_EMA_DECAY.value, use_ema_warmup=True,
                 inv_gamma=1.0, power=2 / 3)
  budget = _MINUTES.value * 60.0

  perm, pos = torch.randperm(n), 0
  losses = []
  step = 0
  mon = CpuMonitor()
  t_start = time.perf_counter()
  while True:
    if pos + batch > n:  # a new epoch; the remainder of the old one is dropped
      perm, pos = torch.randperm(n), 0
    x0 = data[perm[pos:pos + batch]]
    pos += batch
    noise = torch.randn_like(x0)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(x0),), dtype=torch.long)
    xt = sched.add_noise(x0, noise, t)
    out = model(xt, t).sample
    if pred == 'epsilon':
      target = noise
    elif pred == 'sample':
      target = x0
    else:
      target = sched.get_velocity(x0, noise, t)
    loss = torch.nn.functional.mse_loss(out, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    ema.step(model.parameters())
    losses.append(loss.item())
    step += 1
    elapsed = time.perf_counter() - t_start
    if _LOG_EVERY.value and step % _LOG_EVERY.value == 0:
      print(f'step {step} t={elapsed:.0f}s loss(last {_LOG_EVERY.value})='
            f'{float(np.mean(losses[-_LOG_EVERY.value:])):.4f} '
            f'ema_decay={ema.cur_decay_value:.4f}', file=sys.stderr, flush=True)
    if elapsed >= budget:
      break
  train_s = time.perf_counter() - t_start
  train_cpu = mon.stop()

  # Sample from the EMA weights: DDIM, eta 0, DDIMPipeline's scheduler defaults
  # (timestep_spacing 'leading', clip_sample True, set_alpha_to_one True).
  ema.copy_to(model.parameters())
  model.eval()
  ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule='linear', prediction_type=pred)
  ddim.set_timesteps(_DDIM_STEPS.value)
  gen = torch.Generator().manual_seed(_SEED.value + 1)
  mon = CpuMonitor()
  t0 = time.perf_counter()
  with torch.inference_mode():
    x = torch.randn(_SAMPLES.value, 1, size, size, generator=gen)
    for t in ddim.timesteps:
      x = ddim.step(model(x, t).sample, t, x, eta=0.0).prev_sample
  sample_s = time.perf_counter() - t0
  sample_cpu = mon.stop()
  samples = x[:, 0].clamp(-1, 1).numpy().astype(np.float32)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  np.savez(_OUT.value, samples=samples)

  tail = losses[-100:]
  ch = _CH.value
  print(json.dumps({
      'minutes': _MINUTES.value, 'steps': step, 'images_seen': step * batch,
      'steps_per_s': round(step / train_s, 3), 'train_seconds': round(train_s, 1),
      'final_loss': round(losses[-1], 5), 'loss_last100_mean': round(float(np.mean(tail)), 5),
      'sampling_seconds': round(sample_s, 2), 'samples': _SAMPLES.value,
      'ddim_steps': _DDIM_STEPS.value, 'out': _OUT.value, 'params': nparams,
      'final_ema_decay': round(float(ema.cur_decay_value), 5),
      'train_cpu': train_cpu, 'sample_cpu': sample_cpu,
      'settings': {'lr': _LR.value, 'ch': ch, 'block_out_channels': [ch, 2 * ch, 2 * ch],
                   'layers_per_block': _LAYERS.value, 'batch': batch, 'size': size,
                   'upsample': _UPSAMPLE.value if size != 8 else None, 'pred': pred,
                   'ema_max_decay': _EMA_DECAY.value, 'seed': _SEED.value,
                   'threads': _THREADS.value, 'torch': torch.__version__},
  }), flush=True)


if __name__ == '__main__':
  app.run(main)
