"""Bad input ends in one clear line and a non-zero exit, never a traceback."""

import os

import pytest

from tests.conftest import assert_one_line_error, run_launch


def test_unknown_config_key(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--config.training.num_stepz=3'],
                    check=False)
  assert_one_line_error(proc, 'unknown config field num_stepz', 'num_steps')


def test_missing_config_file(tmp_path):
  proc = run_launch(['--config=configs/no_such_config.py', f'--workdir={tmp_path}'], check=False)
  assert_one_line_error(proc, 'cannot load --config', 'no_such_config.py')


def test_indivisible_batch(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--config.training.batch_size=12'],
                    devices=8, check=False)
  assert_one_line_error(proc, 'training.batch_size=12', '8 devices')


def test_unknown_dataset(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--config.data.dataset=no_such_set'],
                    check=False)
  assert_one_line_error(proc, "unknown dataset 'no_such_set'")


def test_unprepared_tfds_dataset_fails_at_once(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}/run', '--config.data.dataset=mnist',
                     f'--config.data.data_dir={tmp_path}/empty'], check=False, timeout=120)
  assert_one_line_error(proc, "'mnist' is not prepared", 'tfds build mnist',
                        '--config.data.data_dir')


def test_checkpoint_that_does_not_fit_the_config(tmp_path, tiny_ddpm):
  workdir = f'{tmp_path}/run'
  run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=1'])
  proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=2',
                     '--config.model.ch=12'], check=False)
  assert_one_line_error(proc, 'does not fit this config', 'shape')
  # The checkpoint that was there is untouched.
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '1'))


def test_sample_without_checkpoint(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--mode=sample'], check=False)
  assert_one_line_error(proc, 'no checkpoint')


@pytest.mark.parametrize('override,needle', [
    ('--config.diffusion.prediction=score', 'diffusion.prediction'),
    ('--config.sampling.sampler=plms', 'sampling.sampler'),
    ('--config.sampling.sigma_schedule=cosine --config.sampling.sampler=heun',
     'sampling.sigma_schedule'),
    ('--config.model.num_groups=3', 'model.num_groups'),
    ('--config.model.dtype=float16', 'model.dtype'),
    ('--config.data.image_size=7', 'data.image_size'),
    ('--config.training.log_every=0', 'training.log_every must be >= 1'),
])
def test_bad_values(tmp_path, tiny_ddpm, override, needle):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', *override.split()], check=False)
  assert_one_line_error(proc, needle)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_ddpm):
  workdir = f'{tmp_path}/run'
  run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=2'])
  proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=6',
                     '--config.optim.lr=1e30'], check=False)
  assert_one_line_error(proc, 'non-finite', 'step')
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert saved == [2]
