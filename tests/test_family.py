"""The family contract (gen_jax.core.family.Experiment): required hooks, defaults, build errors."""

import jax
import pytest

import experiments
from configs import ddpm
from gen_jax.core import family
from gen_jax.core import parallel
from gen_jax.platform.errors import UserError


class _NoStep(family.Experiment):
  """A family that forgot its train step and sample writer."""

  def __init__(self, config, mesh):
    self.config, self.mesh = config, mesh

  def init_state(self, rng):
    raise NotImplementedError

  def train_batches(self):
    raise NotImplementedError


class _NotAFamily:

  def __init__(self, config, mesh):
    del config, mesh


class _Minimal(_NoStep):
  VMAP_FIELDS = ('seed', 'optim.lr', 'optim.ema_decay')

  def train_step(self, state, batch, rng, hparams):
    raise NotImplementedError

  def write_samples(self, state, step, workdir, prefix):
    raise NotImplementedError


@pytest.mark.parametrize('cls,needle', [
    (_NoStep, 'it lacks train_step, write_samples of gen_jax.core.family.Experiment'),
    (_NotAFamily, 'does not subclass gen_jax.core.family.Experiment'),
])
def test_a_family_missing_a_hook_fails_when_built_with_one_line(monkeypatch, cls, needle):
  monkeypatch.setattr(experiments, 'experiment_class', lambda name: cls)
  with pytest.raises(UserError, match=needle) as e:
    experiments.build(ddpm.get_config(), parallel.make_mesh())
  assert '\n' not in str(e.value) and "family 'diffusion'" in str(e.value)


def test_every_registered_family_implements_the_contract():
  assert experiments.FAMILIES == ('classifier', 'diffusion', 'gan', 'ldm', 'vae')
  for name in experiments.FAMILIES:
    assert family.contract_problem(experiments.experiment_class(name)) == '', name


def test_defaults():
  config = ddpm.get_config()
  config.optim.lr, config.optim.ema_decay = 3e-3, 0.5
  minimal = _Minimal(config, parallel.make_mesh())
  # The step's hparams of a plain run: the config's numbers, the seed left out.
  assert minimal.hparams() == {'optim.lr': 3e-3, 'optim.ema_decay': 0.5}
  assert minimal.step_hparams(None) == minimal.hparams()
  assert minimal.evaluate(None, 0) == {} and minimal.eval_labels(8) is None
  assert minimal.finalize_metrics({'loss': 1.0}) == {'loss': 1.0}
  assert minimal.WATCHED_METRICS == ('loss', 'grad_norm') and not minimal.makes_images
  assert minimal.state_sharding() == parallel.replicated(minimal.mesh)
  with pytest.raises(UserError, match='the diffusion family makes no images'):
    minimal.sample_images(None, jax.random.PRNGKey(0), 4)
