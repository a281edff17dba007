"""GAN family end to end through launch.py: digits, conditional digits, ring8, tfds mock
mnist, 8 devices against 1, and one-line errors for bad configs."""

import os

import numpy as np
from PIL import Image
import pytest

from tests.conftest import assert_one_line_error, read_jsonl, run_launch

TINY_DCGAN = [
    '--config=configs/dcgan.py',
    '--config.data.image_size=8',
    '--config.model.z_dim=8',
    '--config.model.g_ch=8',
    '--config.model.d_ch=8',
    '--config.training.batch_size=16',
    '--config.training.log_every=1',
    '--config.training.sample_every=0',
    '--config.training.async_checkpoints=False',
    '--config.sampling.num_samples=16',
    '--config.gan.interp_rows=2',
    '--config.gan.interp_steps=4',
    '--config.gan.cluster_classes=4',  # the default's k-means clusters, fewer
]
TINY_CGAN = ['--config=configs/cgan.py', *TINY_DCGAN[1:-1], '--config.sampling.num_samples=20']
GAN_METRICS = ('grad_norm', 'd_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm',
               'g_grad_norm', 'g_lr', 'd_lr')


def _samples(workdir, name):
  return os.path.join(workdir, 'samples', name)


def test_dcgan_digits_train_then_sample(tmp_path):
  workdir = str(tmp_path / 'run')
  run_launch([*TINY_DCGAN, f'--workdir={workdir}', '--config.training.num_steps=3',
              '--config.training.sample_every=3'])
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in metrics] == [1, 2, 3]
  for key in GAN_METRICS:
    assert all(np.isfinite(m[f'train/{key}']) for m in metrics), key
  assert all(0 < m['train/d_real'] < 1 and 0 < m['train/d_fake'] < 1 for m in metrics)
  for name in ('train_step0000003.png', 'interp_linear_train_step0000003.png',
               'interp_spherical_train_step0000003.png'):
    assert Image.open(_samples(workdir, name)).size[0] >= 256, name
  run_launch([*TINY_DCGAN, f'--workdir={workdir}', '--mode=sample'])
  images = np.load(_samples(workdir, 'sample_step0000003.npz'))['images']
  assert images.shape == (16, 8, 8, 1) and images.min() >= -1 and images.max() <= 1
  # A strip: interp_rows rows of interp_steps images, each 8 px plus 1 px of padding.
  strip = np.asarray(Image.open(_samples(workdir, 'interp_spherical_sample_step0000003.png')))
  assert strip.shape[1] / strip.shape[0] == pytest.approx((4 * 9 + 1) / (2 * 9 + 1))


def test_cgan_sample_mode_writes_balanced_labels_and_class_strips(tmp_path):
  workdir = str(tmp_path / 'run')
  args = [*TINY_CGAN, f'--workdir={workdir}', '--config.training.num_steps=2',
          '--config.gan.spectral_norm=True', '--config.gan.r1_gamma=1.0',
          '--config.gan.truncation=1.0', '--config.gan.d_steps=2']
  run_launch(args)
  run_launch([*args, '--mode=sample'])
  arrays = np.load(_samples(workdir, 'sample_step0000002.npz'))
  assert arrays['images'].shape == (20, 8, 8, 1)
  assert np.bincount(arrays['labels']).tolist() == [2] * 10
  grid = np.asarray(Image.open(_samples(workdir, 'sample_step0000002.png')))
  assert grid.shape[0] / grid.shape[1] == pytest.approx((10 * 9 + 1) / (2 * 9 + 1))
  assert os.path.exists(_samples(workdir, 'interp_class_sample_step0000002.png'))
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert all(np.isfinite(m['train/r1']) for m in metrics)


def test_ring8_logs_mode_metrics_and_writes_a_scatter(tmp_path):
  workdir = str(tmp_path / 'run')
  run_launch(['--config=configs/gan_ring.py', f'--workdir={workdir}',
              '--config.training.num_steps=4', '--config.training.eval_every=2',
              '--config.training.sample_every=4', '--config.training.log_every=1',
              '--config.training.batch_size=32', '--config.sampling.num_samples=64',
              '--config.model.hidden=16', '--config.training.async_checkpoints=False'])
  evals = [m for m in read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
           if 'eval/modes_covered' in m]
  assert [m['step'] for m in evals] == [2, 4]
  for m in evals:
    assert 0 <= m['eval/modes_covered'] <= 8 and 0 <= m['eval/high_quality_fraction'] <= 1
  assert Image.open(_samples(workdir, 'train_step0000004.png')).size[0] >= 256
  points = np.load(_samples(workdir, 'train_step0000004.npz'))['points']
  assert points.shape == (64, 2)


def test_tfds_mock_mnist_smoke(tmp_path):
  """DCGAN on a tfds dataset through tensorflow-datasets' mock data (no network)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from configs import dcgan  # pylint: disable=g-import-not-at-top
  from experiments import programs  # pylint: disable=g-import-not-at-top
  config = dcgan.get_config()
  config.data.dataset = 'mnist'
  config.data.image_size = 8
  config.model.z_dim, config.model.g_ch, config.model.d_ch = 8, 8, 8
  config.training.batch_size = 8
  config.training.num_steps = 2
  config.training.log_every = 1
  config.training.sample_every = 2
  config.sampling.num_samples = 8
  config.gan.interp_rows, config.gan.interp_steps = 2, 3
  config.gan.cluster_classes = 2  # k-means over the mock images
  workdir = str(tmp_path / 'mnist')
  with tfds.testing.mock_data(num_examples=32):
    assert programs.run(config, workdir) == 'done'
  metrics = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in metrics] == [1, 2]
  samples = np.load(_samples(workdir, 'train_step0000002.npz'))
  assert samples['images'].shape == (8, 8, 8, 1)


@pytest.mark.parametrize('d_norm,r1', [('none', 0.5), ('batch', 0.0)])
def test_eight_devices_match_one_device(tmp_path, d_norm, r1):
  """Synchronised BatchNorm (G's, and D's batch statistics), per-example z, pmean'ed
  gradients: 8 devices == 1."""
  args = [*TINY_CGAN, '--config.training.num_steps=5', '--config.gan.spectral_norm=True',
          f'--config.gan.r1_gamma={r1}', '--config.gan.d_steps=2',
          f'--config.model.d_norm={d_norm}']
  runs = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f'd{devices}')
    run_launch([*args, f'--workdir={workdir}'], devices=devices)
    runs[devices] = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  assert [m['step'] for m in runs[1]] == [1, 2, 3, 4, 5]
  for key in ('train/d_loss', 'train/g_loss', 'train/d_real') + (('train/r1',) if r1 else ()):
    np.testing.assert_allclose([m[key] for m in runs[8]], [m[key] for m in runs[1]],
                               rtol=1e-4, err_msg=key)


@pytest.mark.parametrize('override,needle', [
    ('--config.gan.loss=wasserstein', 'gan.loss'),
    ('--config.gan.d_steps=0', 'gan.d_steps'),
    ('--config.data.image_size=12', 'data.image_size=12'),
    ('--config.model.arch=resnet', 'model.arch'),
    ('--config.data.dataset=ring8', "model.arch='mlp'"),
    ('--config.training.eval_every=10', 'training.eval_every'),
    ('--config.gan.ema_decay=0.9', 'gan.ema_decay is now optim.ema_decay'),  # renamed
    ('--config.model.d_norm=layer', 'model.d_norm'),
    ('--config.gan.latent_classes=-1', 'gan.latent_classes'),
    ('--config.gan.latent_classes=10 --config.gan.conditional=True', 'gan.latent_classes=10'),
])
def test_bad_config_gives_one_line_error(tmp_path, override, needle):
  proc = run_launch([*TINY_DCGAN, f'--workdir={tmp_path}', *override.split()], check=False)
  assert_one_line_error(proc, needle)


def test_latent_code_dcgan_resumes_exactly_and_draws_a_row_per_code(tmp_path):
  """gan.latent_classes: the codes' keys resume with the run; the grid has a row a code."""
  args = [*TINY_DCGAN[:-1], '--config.gan.cluster_classes=0', '--config.gan.latent_classes=3',
          '--config.training.log_every=1']
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  run_launch([*args, f'--workdir={straight}', '--config.training.num_steps=4'])
  run_launch([*args, f'--workdir={resumed}', '--config.training.num_steps=2'])
  run_launch([*args, f'--workdir={resumed}', '--config.training.num_steps=4'])
  for key in ('train/d_loss', 'train/g_loss'):
    losses = {r: [m[key] for m in read_jsonl(os.path.join(r, 'metrics.jsonl'))
                  if m['step'] > 2] for r in (straight, resumed)}
    assert len(losses[straight]) == 2
    np.testing.assert_allclose(losses[resumed], losses[straight], rtol=1e-6, err_msg=key)
  run_launch([*args, f'--workdir={resumed}', '--mode=sample'])
  arrays = np.load(_samples(resumed, 'sample_step0000004.npz'))
  assert arrays['images'].shape == (16, 8, 8, 1) and 'labels' not in arrays
  grid = np.asarray(Image.open(_samples(resumed, 'sample_step0000004.png')))
  # 3 rows (codes) of 16 // 3 = 5 samples, each 8 px plus 1 px of padding.
  assert grid.shape[0] / grid.shape[1] == pytest.approx((3 * 9 + 1) / (5 * 9 + 1))
  assert os.path.exists(_samples(resumed, 'interp_class_sample_step0000004.png'))
