"""The redesign is behaviour-neutral: what tools/make_golden_fixtures.py recorded from the
tree before it (tests/data/golden/), this tree still does.

- every configs/*.py resolves to the same JSON;
- every family's train-state tree has the same paths, shapes and dtypes;
- old config.json files (each family's without the fields added since, a GAN from before
  the renames, one without data.loader) complete to the values the old fallbacks gave;
- a checkpoint written by the old tree restores and samples the same arrays.
The tiny runs' metrics on 1 and 8 devices are in tests/test_golden_runs.py.
"""

import glob
import importlib
import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest

from tests.conftest import REPO, run_launch

GOLDEN = os.path.join(REPO, 'tests', 'data', 'golden')


def _fixture(name):
  with open(os.path.join(GOLDEN, name)) as f:
    return json.load(f)


def config_json(name: str) -> dict:
  module = importlib.import_module(f'configs.{name}')
  return json.loads(module.get_config().to_json_best_effort(sort_keys=True))


def copy_runs(tmp_path) -> str:
  """A writable copy of the golden runs, the LDM's autoencoder path pointing into it."""
  runs = os.path.join(str(tmp_path), 'workdirs')
  shutil.copytree(os.path.join(GOLDEN, 'workdirs'), runs)
  ldm_config = os.path.join(runs, 'ldm', 'config.json')
  with open(ldm_config) as f:
    recorded = json.load(f)
  recorded['ldm']['autoencoder_workdir'] = os.path.join(runs, 'vae_spatial')
  with open(ldm_config, 'w') as f:
    json.dump(recorded, f, indent=2, sort_keys=True)
  return runs


def run_args(name: str, runs: str) -> list[str]:
  return [a.replace('{golden}', runs) for a in _fixture('runs.json')['args'][name]]


def test_every_config_resolves_to_the_recorded_json():
  recorded = _fixture('configs.json')
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
                 if not p.endswith(('__init__.py', 'base.py')))
  assert names == sorted(recorded)
  for name in names:
    assert config_json(name) == recorded[name], name


def test_every_family_builds_the_recorded_state_tree(tmp_path):
  import experiments  # pylint: disable=g-import-not-at-top
  from gen_jax.core import parallel  # pylint: disable=g-import-not-at-top
  runs = copy_runs(tmp_path)
  mesh = parallel.make_mesh()
  recorded = _fixture('state_trees.json')
  assert len(recorded) >= 10
  for name, tree in recorded.items():
    config = ml_collections.ConfigDict(config_json(name))
    if name == 'ldm':
      config.ldm.autoencoder_workdir = os.path.join(runs, 'vae_spatial')
      config.data.image_size = 8  # the tiny VAE's
    experiment = experiments.build(config, mesh)
    shapes = jax.eval_shape(experiment.init_state, jax.random.key(0))
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    assert [[jax.tree_util.keystr(path), list(leaf.shape), str(leaf.dtype)]
            for path, leaf in leaves] == tree, name


def test_old_config_files_complete_to_the_old_fallbacks():
  import experiments  # pylint: disable=g-import-not-at-top
  fixture = _fixture('old_configs.json')
  assert set(fixture['recorded']) == set(fixture['expected'])
  for case, recorded in fixture['recorded'].items():
    completed = experiments.upgrade_config(recorded)
    for field, value in fixture['expected'][case].items():
      block, name = field.split('.')
      assert completed[block][name] == value, (case, field)
  # The GAN's unused pre-rename optim.lr is dropped, not kept beside the new names.
  assert 'lr' not in experiments.upgrade_config(fixture['recorded']['gan_before_renames'])['optim']


@pytest.mark.parametrize('name', ['ddpm', 'vae', 'vae_spatial', 'ldm', 'dcgan', 'biggan'])
def test_an_old_checkpoint_samples_the_recorded_arrays(tmp_path, name):
  runs = copy_runs(tmp_path)
  workdir = os.path.join(runs, name)
  old = {os.path.basename(p): np.load(p) for p in glob.glob(os.path.join(workdir, 'samples',
                                                                          '*.npz'))}
  assert old, f'no recorded samples for {name}'
  shutil.rmtree(os.path.join(workdir, 'samples'))
  run_launch([*run_args(name, runs), f'--workdir={workdir}', '--mode=sample'])
  new = {os.path.basename(p): np.load(p) for p in glob.glob(os.path.join(workdir, 'samples',
                                                                          '*.npz'))}
  assert sorted(new) == sorted(old)
  for file_name, arrays in old.items():
    assert sorted(new[file_name].files) == sorted(arrays.files), file_name
    for key in arrays.files:
      assert new[file_name][key].dtype == arrays[key].dtype, (file_name, key)
      assert new[file_name][key].tobytes() == arrays[key].tobytes(), (file_name, key)
