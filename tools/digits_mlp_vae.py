"""A plain PyTorch MLP VAE on scikit-learn's 8x8 digits under a CPU wall-clock budget.

    python tools/digits_mlp_vae.py --minutes=8 --threads=1 --out=mlpvae/m8.npz

(in the PyTorch environment of tools/README.md; torch is imported only when the script
runs, so `--help` works without it)

The reference point for gen_jax's VAE default, trained as
tools/diffusers_digits_anchor.py trains the diffusers anchor: the first 1200 of the 1797
digits, pixels 0..16 -> [0, 1], no augmentation, a fixed wall-clock budget counted from the
first training step (batching, optimizer and logging count). The model is the textbook
VAE (Kingma & Welling 2014): a 64-400-(20 + 20) Gaussian encoder (mean, log-variance), a
20-400-64 Bernoulli decoder (ReLU hidden layers), the ELBO with the reparameterisation
trick, Adam 1e-3, batch 128 (the anchor's). Then it decodes 500 prior samples z ~ N(0, I)
to their Bernoulli means, writes them to --out as an .npz holding one array 'samples' of
shape (500, 8, 8) in [-1, 1] (the anchor's format; gen_jax's evaluation resizes them to
its 16x16 as it resizes the real digits), and prints one JSON line.

Score the output with gen_jax's own evaluation:

    python launch.py --config=configs/vae.py --workdir=runs/mlp_vae --mode=eval \\
        --config.eval.samples_file=mlpvae/m8.npz
"""
import json
import os
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_float('minutes', 3.0, 'Training wall-clock budget in minutes.')
flags.DEFINE_string('out', 'digits_mlp_vae_samples.npz', 'The samples .npz to write.')
flags.DEFINE_integer('seed', 0, 'torch seed (training; sampling uses seed + 1).')
flags.DEFINE_float('lr', 1e-3, 'Adam learning rate.')
flags.DEFINE_integer('hidden', 400, 'Hidden units of the encoder and the decoder.')
flags.DEFINE_integer('latent', 20, 'Latent dimensions.')
flags.DEFINE_integer('batch', 128, 'Training batch.')
flags.DEFINE_integer('samples', 500, 'Prior samples to decode and write.')
flags.DEFINE_integer('threads', 1, 'torch.set_num_threads.')
flags.DEFINE_integer('log_every', 1000, 'Progress line to stderr every N steps (0: none).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  a = flags.FLAGS
  import numpy as np
  import torch
  from sklearn.datasets import load_digits
  from torch import nn
  import torch.nn.functional as F

  torch.set_num_threads(a.threads)
  torch.manual_seed(a.seed)
  x_all = torch.from_numpy(load_digits().data[:1200].astype(np.float32) / 16.0)  # (1200, 64)
  n = len(x_all)

  class VAE(nn.Module):

    def __init__(self):
      super().__init__()
      self.enc = nn.Linear(64, a.hidden)
      self.mu = nn.Linear(a.hidden, a.latent)
      self.logvar = nn.Linear(a.hidden, a.latent)
      self.dec1 = nn.Linear(a.latent, a.hidden)
      self.dec2 = nn.Linear(a.hidden, 64)

    def decode(self, z):
      return self.dec2(F.relu(self.dec1(z)))  # Bernoulli logits (B, 64)

    def forward(self, x):
      h = F.relu(self.enc(x))
      mu, logvar = self.mu(h), self.logvar(h)
      z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
      return self.decode(z), mu, logvar

  model = VAE()
  nparams = sum(p.numel() for p in model.parameters())
  opt = torch.optim.Adam(model.parameters(), lr=a.lr)
  budget = a.minutes * 60.0
  perm, pos, step, losses = torch.randperm(n), 0, 0, []
  t_start = time.perf_counter()
  while True:
    if pos + a.batch > n:  # new epoch; the remainder of the old one is dropped (as the anchor)
      perm, pos = torch.randperm(n), 0
    x = x_all[perm[pos:pos + a.batch]]
    pos += a.batch
    logits, mu, logvar = model(x)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction='sum')
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    loss = (rec + kl) / len(x)  # negative ELBO per digit, nats
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(loss.item())
    step += 1
    elapsed = time.perf_counter() - t_start
    if a.log_every and step % a.log_every == 0:
      print(f'step {step} t={elapsed:.0f}s -elbo(last {a.log_every})='
            f'{float(np.mean(losses[-a.log_every:])):.3f}', file=sys.stderr, flush=True)
    if elapsed >= budget:
      break
  train_s = time.perf_counter() - t_start

  model.eval()
  gen = torch.Generator().manual_seed(a.seed + 1)
  with torch.inference_mode():
    z = torch.randn(a.samples, a.latent, generator=gen)
    probs = torch.sigmoid(model.decode(z))  # (N, 64) Bernoulli means in [0, 1]
  samples = (probs.numpy().reshape(-1, 8, 8) * 2.0 - 1.0).astype(np.float32)
  os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
  np.savez(a.out, samples=samples)
  print(json.dumps({
      'minutes': a.minutes, 'steps': step, 'images_seen': step * a.batch,
      'steps_per_s': round(step / train_s, 3), 'train_seconds': round(train_s, 1),
      'neg_elbo_last100_mean': round(float(np.mean(losses[-100:])), 4), 'out': a.out,
      'samples': a.samples, 'params': nparams,
      'settings': {'lr': a.lr, 'hidden': a.hidden, 'latent': a.latent, 'batch': a.batch,
                   'seed': a.seed, 'threads': a.threads, 'torch': torch.__version__},
  }), flush=True)


if __name__ == '__main__':
  app.run(main)
