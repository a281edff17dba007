"""Quality anchor: a PyTorch DDPM on Fashion-MNIST (28x28) under a CPU wall-clock budget.

Two recipes a user would pick instead of gen_jax:

  --impl=annotated  the recipe of "The Annotated Diffusion Model": lucidrains'
                    Unet(dim=28, channels=1, dim_mults=(1, 2, 4)) from the
                    denoising-diffusion-pytorch package, T = 300 linear betas 1e-4..0.02,
                    Huber loss on the noise, Adam lr 1e-3, batch 128, no EMA; samples by the
                    300-step ancestral chain (posterior variance).
  --impl=diffusers  diffusers' UNet2DModel (block_out_channels (32, 64, 64), attention at
                    7x7 and the mid block), DDPMScheduler linear T = 1000, AdamW lr 1e-3,
                    batch 128, EMA with warm-up (max 0.999); samples by DDIM 50 (eta 0).

Data: the training images of Debian's dataset-fashion-mnist (the IDX gz files in
--data_dir, default /usr/share/datasets/fashion-mnist; `apt-get install
dataset-fashion-mnist`), the 60k training images scaled to [-1, 1], no flips. Training runs
for --minutes of wall clock from the first step; then --samples images are drawn and written
to --out as an .npz with one array 'samples' (N, 28, 28) in [-1, 1]; one JSON line goes to
stdout.

Run it in the PyTorch environment of tools/README.md (plus `pip install
denoising-diffusion-pytorch` for --impl=annotated), then score the samples with gen_jax's
evaluation against Fashion-MNIST (a classifier trained by configs/classifier_fashion.py):

    python tools/fashion_anchor.py --impl=diffusers --minutes=10 --out=fashion/d10.npz
    python launch.py --config=configs/classifier_fashion.py --workdir=runs/classifier_fashion
    python launch.py --config=configs/ddpm.py --workdir=runs/fashion_anchor --mode=eval \\
        --config.data.dataset=fashion_mnist --config.data.image_size=28 \\
        --config.eval.image_size=0 --config.model.attn_resolutions='(7,)' \\
        --config.eval.classifier_workdir=runs/classifier_fashion \\
        --config.eval.samples_file=fashion/d10.npz

(`configs/ddpm.py` is only the scoring frame here: its dataset, size and extractor are
overridden to Fashion-MNIST's, and its U-Net's attention moved to a level a 28x28 net has;
no checkpoint is read.)

The torchvision wheel of a CPU-only torch install may not load (`operator torchvision::nms
does not exist`); denoising_diffusion_pytorch imports it at the top although its Unet does
not use it, so --impl=annotated puts a stand-in module in `sys.modules` first. Sampling with
the annotated recipe is slow on a CPU (300 network calls per image): budget for it.

torch is imported only when the script runs, so `--help` works without it.
"""

import gzip
import json
import os
import sys
import time

from absl import app
from absl import flags

_IMPL = flags.DEFINE_enum('impl', 'annotated', ['annotated', 'diffusers'], 'Which recipe.')
_MINUTES = flags.DEFINE_float('minutes', 10.0, 'Training wall-clock budget in minutes.')
_OUT = flags.DEFINE_string('out', 'fashion_anchor.npz', 'The samples .npz to write.')
_SAMPLES = flags.DEFINE_integer('samples', 1000, 'Samples to draw.')
_BATCH = flags.DEFINE_integer('batch', 128, 'Training batch.')
_LR = flags.DEFINE_float('lr', None, 'Learning rate (default 1e-3 for both recipes).')
_SEED = flags.DEFINE_integer('seed', 0, 'torch seed.')
_THREADS = flags.DEFINE_integer('threads', 2, 'torch.set_num_threads.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', os.environ.get('FASHION_DIR', '/usr/share/datasets/fashion-mnist'),
    'Folder of train-images-idx3-ubyte.gz (default $FASHION_DIR, else Debian\'s folder).')


def load_train(data_dir: str):
  """The 60k training images in [-1, 1], (60000, 1, 28, 28) torch float32."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  with gzip.open(os.path.join(data_dir, 'train-images-idx3-ubyte.gz')) as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
  return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)


def _stub_torchvision():
  """Stand-ins for torchvision and pytorch_fid where they do not import (Unet never uses
  them; denoising_diffusion_pytorch imports them at the top)."""
  import types  # pylint: disable=g-import-not-at-top

  class _Stub(types.ModuleType):

    def __getattr__(self, name):
      if name.startswith('__'):
        raise AttributeError(name)
      m = _Stub(f'{self.__name__}.{name}')
      setattr(self, name, m)
      sys.modules[m.__name__] = m
      return m

    def __call__(self, *a, **k):
      return self

  for name in ('torchvision', 'torchvision.transforms', 'torchvision.utils',
               'torchvision.models', 'pytorch_fid', 'pytorch_fid.inception'):
    try:
      __import__(name)
    except Exception:  # pylint: disable=broad-except
      sys.modules[name] = _Stub(name)


def annotated(x, deadline):
  """The Annotated Diffusion Model's recipe; returns (steps, samples (N, 28, 28))."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  _stub_torchvision()
  from denoising_diffusion_pytorch import Unet  # pylint: disable=g-import-not-at-top
  batch = _BATCH.value
  T = 300
  betas = torch.linspace(1e-4, 0.02, T)
  alphas = 1 - betas
  abar = torch.cumprod(alphas, 0)
  abar_prev = F.pad(abar[:-1], (1, 0), value=1.0)
  post_var = betas * (1 - abar_prev) / (1 - abar)
  net = Unet(dim=28, channels=1, dim_mults=(1, 2, 4))
  opt = torch.optim.Adam(net.parameters(), lr=_LR.value or 1e-3)
  g = torch.Generator().manual_seed(_SEED.value)
  step, t0 = 0, time.time()
  while time.time() < deadline:
    idx = torch.randint(0, len(x), (batch,), generator=g)
    x0 = x[idx]
    t = torch.randint(0, T, (batch,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    a = abar[t].view(-1, 1, 1, 1)
    loss = F.smooth_l1_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t), noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
    if step % 100 == 0:
      print(f'step {step} loss {loss.item():.4f} {step / (time.time() - t0):.2f} steps/s',
            file=sys.stderr)
  net.eval()
  out = []
  with torch.no_grad():
    for i in range(0, _SAMPLES.value, 250):
      n = min(250, _SAMPLES.value - i)
      img = torch.randn((n, 1, 28, 28), generator=g)
      for k in reversed(range(T)):
        tt = torch.full((n,), k, dtype=torch.long)
        mean = (img - betas[k] / (1 - abar[k]).sqrt() * net(img, tt)) / alphas[k].sqrt()
        img = mean + (post_var[k].sqrt() * torch.randn(img.shape, generator=g) if k else 0)
      out.append(img.clamp(-1, 1)[:, 0].numpy())
  return step, np.concatenate(out)


def diffusers_impl(x, deadline):
  """diffusers' UNet2DModel, DDPM training, DDIM-50 samples; returns (steps, samples)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel  # pylint: disable=g-import-not-at-top
  from diffusers.training_utils import EMAModel  # pylint: disable=g-import-not-at-top
  batch = _BATCH.value
  net = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
                    block_out_channels=(32, 64, 64), norm_num_groups=32,
                    down_block_types=('DownBlock2D', 'DownBlock2D', 'AttnDownBlock2D'),
                    up_block_types=('AttnUpBlock2D', 'UpBlock2D', 'UpBlock2D'))
  sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear')
  opt = torch.optim.AdamW(net.parameters(), lr=_LR.value or 1e-3)
  ema = EMAModel(net.parameters(), decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=2 / 3)
  g = torch.Generator().manual_seed(_SEED.value)
  step, t0 = 0, time.time()
  while time.time() < deadline:
    x0 = x[torch.randint(0, len(x), (batch,), generator=g)]
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    loss = F.mse_loss(net(sched.add_noise(x0, noise, t), t).sample, noise)
    opt.zero_grad()
    loss.backward()
    opt.step()
    ema.step(net.parameters())
    step += 1
    if step % 100 == 0:
      print(f'step {step} loss {loss.item():.4f} {step / (time.time() - t0):.2f} steps/s',
            file=sys.stderr)
  ema.copy_to(net.parameters())
  net.eval()
  ddim = DDIMScheduler.from_config(sched.config)
  ddim.set_timesteps(50)
  out = []
  with torch.no_grad():
    for i in range(0, _SAMPLES.value, 250):
      n = min(250, _SAMPLES.value - i)
      img = torch.randn((n, 1, 28, 28), generator=g)
      for t in ddim.timesteps:
        img = ddim.step(net(img, t).sample, t, img).prev_sample
      out.append(img.clamp(-1, 1)[:, 0].numpy())
  return step, np.concatenate(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(_THREADS.value)
  torch.manual_seed(_SEED.value)
  x = load_train(_DATA_DIR.value)
  t0 = time.time()
  deadline = t0 + 60 * _MINUTES.value
  steps, s = (annotated if _IMPL.value == 'annotated' else diffusers_impl)(x, deadline)
  t1 = time.time()
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  np.savez(_OUT.value, samples=s.astype(np.float32))
  print(json.dumps({'impl': _IMPL.value, 'minutes': _MINUTES.value, 'steps': steps,
                    'train_s': round(min(t1, deadline) - t0, 1),
                    'total_s': round(t1 - t0, 1), 'samples': len(s), 'out': _OUT.value,
                    'torch': torch.__version__, 'threads': _THREADS.value}))


if __name__ == '__main__':
  app.run(main)
