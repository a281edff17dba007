"""Vmapped trials (sweep.vmap): trial k trains exactly like a plain run with its overrides."""

import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

import experiments
from configs import ddpm
from gen_jax.core import family as family_lib
from gen_jax.core import parallel
from gen_jax.core import trainer
from gen_jax.core import vmap_trials
from gen_jax.platform.errors import UserError
from tests.conftest import TINY_DDPM, assert_one_line_error, launch_env, read_jsonl
from tests.test_sweep import compile_cache, fast_env, launch  # pylint: disable=unused-import

STEPS = 6
# Trial 0 is a plain run's seed 1 with TINY_DDPM's lr and EMA decay; the vmapped command's
# own config has other values, so a trial that used the config's would show.
VMAP = "{'seed': [1, 2], 'optim': {'lr': [1e-3, 3e-3], 'ema_decay': [0.995, 0.9]}}"
VMAPPED = [*TINY_DDPM, f'--config.sweep.vmap={VMAP}', '--config.optim.lr=2e-3',
           '--config.optim.ema_decay=0.5', f'--config.training.checkpoint_every={STEPS // 2}',
           f'--config.training.num_steps={STEPS}']


class _Family(family_lib.Experiment):
  """A family that only says which fields its trials may vary (nothing is trained)."""

  def __init__(self, config, vmap_fields):
    self.config, self.mesh, self.VMAP_FIELDS = config, parallel.make_mesh(), vmap_fields

  def init_state(self, rng):
    raise NotImplementedError

  def train_batches(self):
    raise NotImplementedError

  def train_step(self, state, batch, rng, hparams):
    raise NotImplementedError

  def write_samples(self, state, step, workdir, prefix):
    raise NotImplementedError


def _restore(workdir: str):
  """(config, state) of a finished run, restored in this process."""
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  experiment = experiments.build(config, parallel.make_mesh())
  if vmap_trials.requested(config):
    experiment = vmap_trials.VmappedTrials(experiment)
  return config, trainer.restore_latest(experiment, workdir)


@pytest.fixture(scope='module')
def vmapped_run(tmp_path_factory, compile_cache):  # pylint: disable=redefined-outer-name
  """2 trials on 4 devices (2 trials x 2 data shards), STEPS steps without a break."""
  workdir = str(tmp_path_factory.mktemp('vmapped') / 'run')
  proc = launch([*VMAPPED, f'--workdir={workdir}'], fast_env(4, compile_cache))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '2 trial x 2 data device(s)' in proc.stdout
  return workdir


def test_trial_equals_a_plain_run_with_its_overrides(vmapped_run, tmp_path, compile_cache):
  plain = str(tmp_path / 'plain')
  proc = launch([*TINY_DDPM, f'--workdir={plain}', '--config.seed=1',
                 f'--config.training.num_steps={STEPS}'], fast_env(1, compile_cache))
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = read_jsonl(os.path.join(vmapped_run, 'metrics.jsonl'))
  want = {m['step']: m for m in read_jsonl(os.path.join(plain, 'metrics.jsonl'))}
  assert [m['step'] for m in lines] == list(range(1, STEPS + 1))
  for m in lines:
    for name in ('loss', 'grad_norm', 'lr', 'loss_q0'):
      np.testing.assert_allclose(m[f'train/{name}/trial_0'], want[m['step']][f'train/{name}'],
                                 rtol=2e-5, err_msg=f'{name} at step {m["step"]}')
    assert m['train/lr/trial_1'] == pytest.approx(3 * m['train/lr/trial_0'])  # same warmup
  assert lines[-1]['train/loss/trial_1'] != lines[-1]['train/loss/trial_0']
  # The EMA (decay a traced per-trial value) and the parameters match too.
  _, stacked = _restore(vmapped_run)
  _, single = _restore(plain)
  trial0 = jax.tree.map(lambda x: np.asarray(x)[0], (stacked.params, stacked.ema_params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               trial0, (single.params, single.ema_params))
  assert int(stacked.step) == STEPS
  np.testing.assert_array_equal(np.asarray(stacked.rng)[0], jax.random.PRNGKey(1))


def test_resumed_vmapped_run_is_exact(vmapped_run, tmp_path, compile_cache):
  # The run as if it had died after its checkpoint at STEPS // 2.
  workdir = str(tmp_path / 'resumed')
  shutil.copytree(vmapped_run, workdir)
  shutil.rmtree(os.path.join(workdir, 'checkpoints', str(STEPS)))
  metrics = os.path.join(workdir, 'metrics.jsonl')
  kept = [json.dumps(m) + '\n' for m in read_jsonl(metrics) if m['step'] <= STEPS // 2]
  with open(metrics, 'w') as f:
    f.writelines(kept)
  proc = launch([*VMAPPED, f'--workdir={workdir}'], fast_env(4, compile_cache))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'resuming at step {STEPS // 2} of {STEPS}' in proc.stdout
  want = read_jsonl(os.path.join(vmapped_run, 'metrics.jsonl'))
  got = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in got] == list(range(1, STEPS + 1))
  for a, b in zip(got, want):
    for k in range(2):
      assert a[f'train/loss/trial_{k}'] == b[f'train/loss/trial_{k}'], (a['step'], k)  # bitwise


def test_a_field_that_changes_shapes_is_refused(tmp_path):
  proc = launch([*TINY_DDPM, f'--workdir={tmp_path}', "--config.sweep.vmap={'model': "
                 "{'ch': [8, 16]}, 'seed': [0, 1]}"], launch_env(1), timeout=120)
  assert_one_line_error(proc, 'sweep.vmap cannot vary model.ch', "family 'diffusion'",
                        'seed, optim.lr, optim.ema_decay', 'launch.py --sweep=FILE')
  assert not os.path.exists(os.path.join(tmp_path, 'checkpoints'))


@pytest.mark.parametrize('vmap,needle', [
    ({'seed': [0, 1], 'optim': {'lr': [1e-3]}}, 'must all have the same length'),
    ({'optim': {'lrr': [1e-3]}}, "'optim.lrr', which is not a field"),
    ({'optim': {'lr': 1e-3}}, 'must be a non-empty list'),
    ({'optim': {'lr': [1e-3, 'fast']}}, 'must hold numbers only'),
    ({'optim': {'lr': [1e-3, -1.0]}}, 'sweep.vmap.optim.lr values must be positive, not -1.0'),
    ({'seed': [0, 1.5]}, 'an integer'),
    ({'training': {'num_steps': [10, 20]}}, 'cannot vary training.num_steps'),
])
def test_bad_vmap_settings(vmap, needle):
  config = ddpm.get_config()
  config.sweep.vmap = vmap
  family = _Family(config, ('seed', 'optim.lr', 'optim.ema_decay'))
  with pytest.raises(UserError, match=needle) as e:
    vmap_trials.VmappedTrials(family)
  assert '\n' not in str(e.value)


def test_trials_and_eval_modes_do_not_mix():
  config = ddpm.get_config()
  config.sweep.vmap = {'seed': [0, 1]}
  family = _Family(config, ('seed',))
  with pytest.raises(UserError, match='--mode=eval scores one run'):
    vmap_trials.VmappedTrials(family, mode='eval')
  config.training.eval_every, config.eval.num_samples_train = 100, 64
  with pytest.raises(UserError, match='eval.num_samples_train'):
    vmap_trials.VmappedTrials(family)


def test_a_diverged_trial_is_reported_and_left_out_of_the_means(capsys):
  config = ddpm.get_config()
  config.sweep.vmap = {'optim': {'lr': [1e-3, 1.0, 2e-3]}}
  family = _Family(config, ('optim.lr',))
  trials = vmap_trials.VmappedTrials(family)
  metrics = {'loss': np.array([0.5, np.nan, 0.25], np.float32),
             'grad_norm': np.array([1.0, np.inf, 3.0], np.float32)}
  out = trials.finalize_metrics(metrics)
  assert out['loss'] == pytest.approx(0.375) and out['grad_norm'] == pytest.approx(2.0)
  assert out['loss/trial_2'] == 0.25 and np.isnan(out['loss/trial_1'])
  trials.finalize_metrics(metrics)  # reported once
  assert capsys.readouterr().out.count('warning: trial 1 (optim.lr=1.0) has a non-finite') == 1
  all_bad = trials.finalize_metrics({'loss': np.full(3, np.nan), 'grad_norm': np.ones(3)})
  assert np.isnan(all_bad['loss'])  # and the train loop stops, as for a plain run
