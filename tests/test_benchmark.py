"""The benchmark builds exactly the peer's networks from configs/bench_peer.py."""

import jax
import pytest

from configs import bench_peer
from experiments.diffusion import DiffusionExperiment
from gen_jax import parallel


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
