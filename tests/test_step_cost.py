"""experiments.step_cost: the full 128x128 BigGAN trains on CPU, and its compiled step's
FLOPs agree with a hand count of its convolutions."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from configs import biggan_imagenet128
from gen_jax.models import biggan

from tests.conftest import REPO, assert_one_line_error, launch_env

STEP_COST = ['-m', 'experiments.step_cost']


def _conv_flops(c_in: int, c_out: int, side: int, k: int = 3) -> float:
  """Multiply-adds x 2 of a k x k convolution at side x side output positions."""
  return 2.0 * k * k * c_in * c_out * side * side


def _biggan128_forward_flops() -> tuple[float, float]:
  """Closed-form FLOPs of one image's G and D forward passes, counting only their
  convolutions (the bulk; BatchNorm, attention and the dense layers are left out), for
  configs/biggan_imagenet128.py's widths: G 4x4x1536 -> up-blocks to 128x128x96 -> RGB;
  D down-blocks 128 (3 -> 96) ... 8 (768 -> 1536) then 4x4 (1536 -> 1536).
  """
  ch, g_mults, d_mults = 96, (16, 8, 4, 2, 1), (1, 2, 4, 8, 16, 16)
  g, c_in, side = 0.0, ch * g_mults[0], 4
  for mult in g_mults:
    # Each up-block: "2x nearest, 3x3 conv in->out" as four 2x2 phase convolutions at the
    # input side (gen_jax.models.biggan.UpConv), 3x3 out->out at 2x, 1x1 shortcut at 1x.
    c_out = ch * mult
    g += 4 * _conv_flops(c_in, c_out, side, k=2) + _conv_flops(c_out, c_out, 2 * side)
    g += _conv_flops(c_in, c_out, side, k=1)
    side *= 2
    c_in = c_out
  g += _conv_flops(ch, 3, side)  # to RGB
  d, c_in, side = 0.0, 3, 128
  for i, mult in enumerate(d_mults):
    # Each down-block: 3x3 in->out at its input side, then "3x3 out->out and 2x2 average
    # pooling" as one 4x4 convolution at half the side (gen_jax.models.biggan.ConvPool);
    # the last block (4x4, no pooling): two 3x3 convolutions.
    c_out = ch * mult
    d += _conv_flops(c_in, c_out, side)
    d += _conv_flops(c_out, c_out, side // 2, k=4) if i < 5 else _conv_flops(c_out, c_out, side)
    c_in, side = c_out, (side // 2 if i < 5 else side)
  return g, d


def _biggan128_gram_flops() -> float:
  """Closed-form FLOPs of one W^T W of the orthogonal regularization, summed over G's
  weights (each reshaped to (fan_in, out): 2 fan_in out^2), G's shared embedding skipped
  as the step skips it. A step pays this once, whatever its batch: the Gram matrices
  forward and at least as much again for their gradient."""
  m = biggan_imagenet128.get_config().model
  g = biggan.BigGANGenerator(channels=1, ch=m.g_ch, ch_mults=m.g_ch_mults, num_classes=10,
                             shared_dim=m.shared_dim, hierarchical=m.hierarchical,
                             attn_res=m.g_attn)
  shapes = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, m.z_dim)),
                                         jnp.zeros((1, 10)), train=False))['params']
  total = 0.0
  for path, w in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    names = {getattr(k, 'key', None) for k in path}
    if len(w.shape) >= 2 and 'shared' not in names:
      fan_in, out = math.prod(w.shape[:-1]), w.shape[-1]
      total += 2.0 * fan_in * out * out
  return total


def test_full_biggan_128_trains_two_steps_on_cpu_and_counts_its_flops(tmp_path):
  """configs/biggan_imagenet128.py (70M-parameter G, attention at 64x64), the real step
  (2 D updates, 1 G update, EMA) at batch 1 on one CPU device, with digits for data (the
  same networks up to the first and last layer's channels and the class embedding)."""
  out = tmp_path / 'cost.json'
  proc = subprocess.run(
      [sys.executable, *STEP_COST, '--config=' + os.path.join(REPO, 'configs',
                                                             'biggan_imagenet128.py'),
       '--config.data.dataset=digits', '--batch=1', '--warmup=1', '--steps=1', f'--out={out}'],
      cwd=REPO, env=launch_env(1), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  cost = json.loads(out.read_text())
  assert cost['batch'] == 1 and cost['devices'] == 1 and cost['flops_complete']
  metrics = cost['metrics_last_step']
  for name in ('d_loss', 'g_loss', 'g_ortho', 'd_grad_norm', 'g_grad_norm'):
    assert math.isfinite(metrics[name]), (name, metrics)
  assert metrics['g_ortho'] > 0  # the orthogonal regularisation is in the step
  # Per example, a step runs G forward 3 times (2 D updates, 1 G update) and backward once
  # (~2 forwards), D forward 5 times (real and fake in each D update, fake in the G update)
  # and backward as often: at least 5 G + 15 D forwards' convolutions. Per step, whatever
  # the batch, the orthogonal regularization's Gram matrices and their gradient: at least
  # twice the Gram products (at batch 1 the two add up).
  g, d = _biggan128_forward_flops()
  assert 25e9 < g < 26e9 and 12e9 < d < 14e9  # docs/results' BigGAN step-cost figures
  gram = _biggan128_gram_flops()
  assert 190e9 < gram < 200e9
  lower = cost['batch'] * (5 * g + 15 * d) + 2 * gram
  assert lower <= cost['flops_per_step'] <= 2 * lower, (cost['flops_per_step'], lower)
  full = cost['full_run']
  assert (full['batch'], full['steps']) == (2048, 150_000)
  assert math.isclose(full['flops'], cost['flops_per_example'] * 2048 * 150_000, rel_tol=1e-9)


def test_batch_that_does_not_divide_over_devices_is_one_line():
  proc = subprocess.run(
      [sys.executable, *STEP_COST, '--config=' + os.path.join(REPO, 'configs', 'biggan.py'),
       '--batch=3'], cwd=REPO, env=launch_env(2), capture_output=True, text=True, timeout=300)
  assert_one_line_error(proc, '--batch')
