"""BigGAN end to end through launch.py: 8 devices train exactly like 1 (cross-replica
BatchNorm), a resumed run continues exactly, samples with standing statistics and the
class interpolation strip, and one-line errors for bad BigGAN configs."""

import os

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, read_jsonl, run_launch

TINY_BIGGAN = [
    '--config=configs/biggan.py',
    '--config.data.image_size=8',
    '--config.model.z_dim=8',
    '--config.model.g_ch=4',
    '--config.model.g_ch_mults=(2,)',
    '--config.model.shared_dim=4',
    '--config.model.g_attn=4',
    '--config.model.d_ch=4',
    '--config.model.d_ch_mults=(2,2)',
    '--config.model.d_num_down=1',
    '--config.model.d_attn=4',
    '--config.training.batch_size=16',
    '--config.training.log_every=1',
    '--config.training.sample_every=0',
    '--config.training.async_checkpoints=False',
    '--config.sampling.num_samples=20',
    '--config.gan.interp_rows=2',
    '--config.gan.interp_steps=4',
    '--config.optim.ema_start=3',  # the EMA switches on inside the runs below
    '--config.gan.standing_batches=2',
]
KEYS = ('train/d_loss', 'train/g_loss', 'train/d_real', 'train/g_ortho')


def test_eight_devices_match_one_device(tmp_path):
  """G's BatchNorm statistics are those of the global batch on any number of devices."""
  runs = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f'd{devices}')
    run_launch([*TINY_BIGGAN, f'--workdir={workdir}', '--config.training.num_steps=3'],
               devices=devices)
    runs[devices] = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in runs[1]] == [1, 2, 3]
  for key in KEYS:
    np.testing.assert_allclose([m[key] for m in runs[8]], [m[key] for m in runs[1]],
                               rtol=1e-4, err_msg=key)


def test_resumed_run_matches_the_uninterrupted_one_and_samples(tmp_path):
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  run_launch([*TINY_BIGGAN, f'--workdir={straight}', '--config.training.num_steps=4'])
  run_launch([*TINY_BIGGAN, f'--workdir={resumed}', '--config.training.num_steps=2'])
  proc = run_launch([*TINY_BIGGAN, f'--workdir={resumed}', '--config.training.num_steps=4'])
  assert 'resuming at step 2' in proc.stdout
  want = {m['step']: m for m in read_jsonl(os.path.join(straight, 'metrics.jsonl'))}
  got = {m['step']: m for m in read_jsonl(os.path.join(resumed, 'metrics.jsonl'))}
  assert sorted(got) == [1, 2, 3, 4]
  for step in (3, 4):
    for key in KEYS:
      assert got[step][key] == want[step][key], (step, key)  # same batches, same keys
  # Samples of both runs (EMA weights, standing statistics) are the same.
  for workdir in (straight, resumed):
    run_launch([*TINY_BIGGAN, f'--workdir={workdir}', '--mode=sample'])
  samples = [np.load(os.path.join(w, 'samples', 'sample_step0000004.npz'))
             for w in (straight, resumed)]
  assert samples[0]['images'].shape == (20, 8, 8, 1)
  np.testing.assert_array_equal(samples[0]['images'], samples[1]['images'])
  assert np.bincount(samples[0]['labels']).tolist() == [2] * 10
  assert os.path.exists(os.path.join(straight, 'samples',
                                     'interp_class_sample_step0000004.png'))


@pytest.mark.parametrize('override,needle', [
    ('--config.model.z_dim=9', 'model.z_dim=9'),
    ('--config.data.image_size=16', 'data.image_size=16'),
    ('--config.gan.sample_bn_stats=ema', 'gan.sample_bn_stats'),
    ('--config.gan.ortho_reg=-1.0', 'gan.ortho_reg'),
])
def test_bad_biggan_config_gives_one_line_error(tmp_path, override, needle):
  proc = run_launch([*TINY_BIGGAN, f'--workdir={tmp_path}', override], check=False)
  assert_one_line_error(proc, needle)
