"""A plain PyTorch DCGAN on the embedded digits: the reference for `configs/dcgan.py`.

The same players as `configs/dcgan.py` at 16x16 (G: z 64 -> Linear 4x4x128 -> BN ReLU ->
ConvTranspose 4/2 to 8x8x64 -> BN ReLU -> ConvTranspose 4/2 to 16x16x1 -> tanh; D: Conv
4/2 16 -> 8 (32 ch) -> LeakyReLU 0.2 -> Conv 4/2 8 -> 4 (64 ch) [-> BatchNorm] ->
LeakyReLU -> Linear 1), N(0, 0.02) weights, the non-saturating BCE loss, Adam(2e-4,
beta1 0.5) for both, batch 64, an EMA of G's weights (decay 0.999) that samples with the
live G's running BatchNorm statistics in eval mode. Data: the first 1500 of
scikit-learn's digits, /16, resized bilinearly (Pillow) to 16x16, clipped to [0, 1] and
mapped to [-1, 1], exactly as gen_jax.data.datasets prepares them. Trains for `--minutes` of wall
clock (the model built and the data loaded first), then writes `--num_samples` EMA
samples as an .npz ('images', (N, 16, 16, 1) float32 in [-1, 1]) that
`launch.py --mode=eval --config.eval.samples_file=FILE` scores.

    taskset -c 1 python tools/torch_dcgan_digits.py --minutes=5 --out=torch_dcgan.npz

Uses torch (the PyTorch environment of tools/README.md), never imported by gen_jax or its
tests; torch is imported only when the script runs, so `--help` works without it.
"""

import copy
import time

from absl import app
from absl import flags
import numpy as np

flags.DEFINE_float('minutes', 5.0, 'Training wall clock in minutes.')
flags.DEFINE_string('out', None, 'The .npz of the EMA samples to write (required).')
flags.DEFINE_integer('num_samples', 1024, 'EMA samples to write.')
flags.DEFINE_integer('batch_size', 64, 'Training batch.')
flags.DEFINE_integer('z_dim', 64, 'Latent dimensions.')
flags.DEFINE_integer('g_ch', 64, "G's base channels.")
flags.DEFINE_integer('d_ch', 32, "D's base channels.")
flags.DEFINE_enum('d_norm', 'batch', ['batch', 'none'],
                  "D's second conv: BatchNorm (the DCGAN paper) or none.")
flags.DEFINE_float('lr', 2e-4, 'Adam learning rate of both players.')
flags.DEFINE_float('ema', 0.999, "EMA decay of G's weights.")
flags.DEFINE_integer('threads', 1, 'torch.set_num_threads.')
flags.DEFINE_integer('seed', 0, 'torch seed.')
flags.mark_flag_as_required('out')


def load_digits_16() -> np.ndarray:
  """The first 1500 digits as gen_jax.data.datasets prepares them at 16x16: (1500, 1, 16, 16)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  images = load_digits().images.astype(np.float32)[:1500] / 16.0  # (1500, 8, 8)
  out = np.stack([np.asarray(Image.fromarray(im, mode='F').resize((16, 16), Image.BILINEAR))
                  for im in images])  # (1500, 16, 16)
  return (np.clip(out, 0.0, 1.0) * 2.0 - 1.0)[:, None].astype(np.float32)


def players():
  """The DCGAN classes (Generator, Discriminator, dcgan_init), defined once torch is
  imported (torch is imported only when the script runs, so `--help` works without it)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class Generator(nn.Module):
    """z (B, Z) -> (B, 1, 16, 16) in [-1, 1]."""

    def __init__(self, z_dim: int, ch: int):
      super().__init__()
      self.ch = ch
      self.project = nn.Linear(z_dim, 4 * 4 * 2 * ch, bias=False)
      self.bn0 = nn.BatchNorm2d(2 * ch, momentum=0.1)  # torch momentum 0.1 = flax 0.9
      self.up = nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1, bias=False)  # 4x4 -> 8x8
      self.bn1 = nn.BatchNorm2d(ch, momentum=0.1)
      self.to_image = nn.ConvTranspose2d(ch, 1, 4, 2, 1)  # 8x8 -> 16x16

    def forward(self, z):
      h = self.project(z).view(z.shape[0], 2 * self.ch, 4, 4)
      h = torch.relu(self.bn0(h))
      h = torch.relu(self.bn1(self.up(h)))
      return torch.tanh(self.to_image(h))

  class Discriminator(nn.Module):
    """x (B, 1, 16, 16) -> logits (B,)."""

    def __init__(self, ch: int, batch_norm: bool):
      super().__init__()
      self.down0 = nn.Conv2d(1, ch, 4, 2, 1)
      self.down1 = nn.Conv2d(ch, 2 * ch, 4, 2, 1)
      self.norm = nn.BatchNorm2d(2 * ch) if batch_norm else nn.Identity()
      self.logit = nn.Linear(4 * 4 * 2 * ch, 1)

    def forward(self, x):
      h = nn.functional.leaky_relu(self.down0(x), 0.2)
      h = nn.functional.leaky_relu(self.norm(self.down1(h)), 0.2)
      return self.logit(h.flatten(1))[:, 0]

  def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases for every linear and conv layer (Radford et al.)."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
      nn.init.normal_(module.weight, 0.0, 0.02)
      if module.bias is not None:
        nn.init.zeros_(module.bias)

  return Generator, Discriminator, dcgan_init


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  Generator, Discriminator, dcgan_init = players()  # pylint: disable=invalid-name
  args = flags.FLAGS

  start = time.time()
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  data = torch.from_numpy(load_digits_16())  # (1500, 1, 16, 16)
  g = Generator(args.z_dim, args.g_ch)
  d = Discriminator(args.d_ch, args.d_norm == 'batch')
  g.apply(dcgan_init)
  d.apply(dcgan_init)
  g_ema = copy.deepcopy(g).eval()
  opt_g = torch.optim.Adam(g.parameters(), args.lr, betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(d.parameters(), args.lr, betas=(0.5, 0.999))
  bce = nn.functional.binary_cross_entropy_with_logits
  ones = torch.ones(args.batch_size)
  zeros = torch.zeros(args.batch_size)

  steps, perm, pos = 0, torch.randperm(len(data)), 0
  while time.time() - start < 60 * args.minutes:
    if pos + args.batch_size > len(data):  # a new epoch (drop the remainder)
      perm, pos = torch.randperm(len(data)), 0
    real = data[perm[pos:pos + args.batch_size]]
    pos += args.batch_size
    # D: real against fakes from fresh z (no gradient into G).
    fake = g(torch.randn(args.batch_size, args.z_dim))
    d_loss = bce(d(real), ones) + bce(d(fake.detach()), zeros)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    # G: non-saturating, fresh z.
    g_loss = bce(d(g(torch.randn(args.batch_size, args.z_dim))), ones)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    with torch.no_grad():
      for p_ema, p in zip(g_ema.parameters(), g.parameters()):
        p_ema.lerp_(p, 1.0 - args.ema)
      for b_ema, b in zip(g_ema.buffers(), g.buffers()):  # the live G's running BN stats
        b_ema.copy_(b)
    steps += 1
    if steps % 500 == 0:
      print(f'step {steps} {time.time() - start:.0f}s d_loss {d_loss.item():.3f} '
            f'g_loss {g_loss.item():.3f}', flush=True)

  with torch.no_grad():
    samples = g_ema(torch.randn(args.num_samples, args.z_dim))  # (N, 1, 16, 16)
  images = samples.permute(0, 2, 3, 1).numpy().astype(np.float32)  # (N, 16, 16, 1)
  np.savez_compressed(args.out, images=np.clip(images, -1.0, 1.0))
  print(f'{steps} steps in {time.time() - start:.0f} s; wrote {args.out} ({len(images)} '
        f'samples)', flush=True)


if __name__ == '__main__':
  app.run(main)
