"""The benchmark builds exactly the peer's networks from configs/bench_peer.py."""

import jax
import pytest

from configs import bench_peer
from experiments.diffusion.experiment import DiffusionExperiment
from gen_jax.core import parallel


@pytest.mark.parametrize('net,params', [('small', 1_623_169), ('cifar10', 35_746_307)])
def test_peer_nets_parameter_counts(net, params):
  config = bench_peer.get_config(net)
  size = config.data.image_size
  mesh = jax.make_mesh((1,), (parallel.DATA_AXIS,), devices=jax.devices()[:1])
  experiment = DiffusionExperiment(config, mesh, image_shape=(size, size, config.bench_channels))
  state = jax.eval_shape(experiment.init_state, jax.random.PRNGKey(0))
  assert sum(x.size for x in jax.tree.leaves(state.params)) == params


def test_peer_train_step_settings():
  config = bench_peer.get_config('small')
  assert (config.optim.optimizer, config.optim.lr, config.optim.grad_clip) == ('adamw', 2e-4, 0)
  assert config.training.batch_size == 64 and bench_peer.get_config('cifar10').training.batch_size == 16
  with pytest.raises(ValueError, match='peer net'):
    bench_peer.get_config('imagenet')


def test_benchmark_command_prints_the_fields_the_readme_names(tmp_path):
  """One step of each phase on the small net: the command runs and its JSON has the fields
  (no timing is asserted: speed is measured by the benchmark itself, not by tests)."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests.conftest import REPO, launch_env  # pylint: disable=g-import-not-at-top
  out = tmp_path / 'bench.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', '--nets=small', '--warmup=1',
       '--train_steps=1', '--ddim_steps=2', '--small_batch=8', f'--out={out}'],
      cwd=REPO, env=launch_env(2), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  small = result['models']['small']
  assert small['params'] == 1_623_169 and small['batch'] == 8  # --small_batch
  for value in (small['train']['images_per_s'], small['train']['compile_s'],
                small['sample']['ddim']['seconds_per_image_step'],
                small['sample']['ddim']['compile_s']):
    assert value > 0
  assert small['sample']['ddim']['finite'] and result['devices']['count'] == 2
  # Backward costs about twice the forward pass; utilization is a positive fraction.
  assert 2.5 < small['gflop_per_image']['train_step'] / small['gflop_per_image']['forward'] < 3.5
  assert result['devices']['matmul_gflop_s'] > 0
  for phase in (small['train'], small['sample']['ddim']):
    assert 0 < phase['fraction_of_matmul_rate'] < 2


def test_flop_count_matches_the_closed_form_of_a_convolution():
  """The benchmark's FLOP counter on one 3x3 'SAME' conv, squared: 2 multiply-adds per
  kernel tap that lands inside the image ((3H - 2)(3W - 2) of them per channel pair, the
  padding is not counted), plus the bias add and the square; the parameter gradient adds
  the weight gradient's as many (the network input needs no gradient)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from experiments import benchmark  # pylint: disable=g-import-not-at-top

  class OneConv(nn.Module):
    @nn.compact
    def __call__(self, x, t, train=False):
      del t, train
      return jnp.square(nn.Conv(16, (3, 3))(x))  # nonlinear: the gradient needs the forward

  params = OneConv().init(jax.random.PRNGKey(0), np.zeros((1, 12, 12, 8)), None)
  gflop = benchmark.model_gflop_per_image(OneConv(), params, (12, 12, 8))
  conv_flops = 2 * (3 * 12 - 2) ** 2 * 8 * 16
  elementwise = 2 * 12 * 12 * 16  # bias add, square
  np.testing.assert_allclose(gflop['forward'] * 1e9, conv_flops + elementwise, rtol=1e-9)
  np.testing.assert_allclose(gflop['train_step'] * 1e9, 2 * conv_flops, rtol=0.05)
