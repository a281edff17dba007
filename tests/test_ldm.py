"""Latent diffusion in a trained VAE's latent space."""

import os

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, read_jsonl, run_launch

TINY_VAE = [
    '--config=configs/vae_spatial.py',
    '--config.data.image_size=8',
    '--config.model.features=(8,)',
    '--config.model.hidden=16',
    '--config.vae.latent_shape=(4,4,2)',
    '--config.vae.iwae_samples=2',
    '--config.training.batch_size=16',
    '--config.training.log_every=1',
    '--config.training.eval_every=0',
    '--config.training.sample_every=0',
    '--config.sampling.num_samples=8',
    '--config.training.async_checkpoints=False',
]

TINY_LDM = [
    '--config=configs/ldm.py',
    '--config.model.ch=8',
    '--config.model.ch_mult=(1,2)',
    '--config.model.num_res_blocks=1',
    '--config.model.attn_resolutions=()',
    '--config.model.num_groups=4',
    '--config.diffusion.num_timesteps=20',
    '--config.sampling.num_steps=5',
    '--config.training.batch_size=16',
    '--config.training.log_every=1',
    '--config.training.sample_every=0',
    '--config.sampling.num_samples=8',
    '--config.training.async_checkpoints=False',
]


def test_scale_by_std_gives_unit_variance():
  from experiments.ldm.experiment import latent_scale
  latents = np.random.default_rng(0).normal(0.3, 4.0, size=(500, 4, 4, 2))
  scale = latent_scale(latents)
  assert np.std(latents * scale) == pytest.approx(1.0, rel=1e-6)


def cached(vae_dir):
  return sorted(os.listdir(os.path.join(vae_dir, 'latents')))


def test_vae_then_ldm_then_samples_and_cache(tmp_path):
  vae_dir, ldm_dir = str(tmp_path / 'vae'), str(tmp_path / 'ldm')
  run_launch([*TINY_VAE, f'--workdir={vae_dir}', '--config.training.num_steps=2'])
  ldm = [*TINY_LDM, f'--workdir={ldm_dir}', f'--config.ldm.autoencoder_workdir={vae_dir}']
  run_launch([*ldm, '--config.training.num_steps=3'])
  assert [m['step'] for m in read_jsonl(os.path.join(ldm_dir, 'metrics.jsonl'))] == [1, 2, 3]
  first = cached(vae_dir)
  assert len(first) == 1
  # Encoded once: its latents are reused by the next run of the same VAE.
  mtime = os.path.getmtime(os.path.join(vae_dir, 'latents', first[0]))
  run_launch([*ldm, '--mode=sample'])
  assert cached(vae_dir) == first
  assert os.path.getmtime(os.path.join(vae_dir, 'latents', first[0])) == mtime
  out = np.load(os.path.join(ldm_dir, 'samples', 'sample_step0000003_ddim5_eta0.npz'))
  assert out['images'].shape == (8, 8, 8, 1) and out['latents'].shape == (8, 4, 4, 2)
  assert out['images'].min() >= -1 and out['images'].max() <= 1
  assert os.path.exists(os.path.join(ldm_dir, 'samples', 'sample_step0000003_ddim5_eta0.png'))
  # Training the VAE further changes its parameters: a new cache entry.
  run_launch([*TINY_VAE, f'--workdir={vae_dir}', '--config.training.num_steps=3'])
  run_launch([*ldm, '--mode=sample'])
  assert len(cached(vae_dir)) == 2


def test_autoencoder_workdir_without_a_vae(tmp_path):
  proc = run_launch([*TINY_LDM, f'--workdir={tmp_path}/ldm',
                     f'--config.ldm.autoencoder_workdir={tmp_path}/nothing'], check=False)
  assert_one_line_error(proc, 'not a gen_jax run', 'train a vae run first', 'vae_spatial.py')


def test_latent_that_does_not_fit_the_unet(tmp_path):
  vae_dir = str(tmp_path / 'vae')
  run_launch([*TINY_VAE, f'--workdir={vae_dir}', '--config.training.num_steps=1'])
  proc = run_launch([*TINY_LDM, f'--workdir={tmp_path}/ldm',
                     f'--config.ldm.autoencoder_workdir={vae_dir}',
                     '--config.model.ch_mult=(1,2,2,2)'], check=False)
  assert_one_line_error(proc, 'does not fit the U-Net')


def test_a_trained_vae_loads_without_any_data(tmp_path, monkeypatch):
  """load_run restores the VAE's parameters into its network from the checkpoint alone."""
  import jax  # pylint: disable=g-import-not-at-top
  import experiments  # pylint: disable=g-import-not-at-top
  from gen_jax.platform import checkpoint  # pylint: disable=g-import-not-at-top
  from gen_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from gen_jax.core import parallel  # pylint: disable=g-import-not-at-top
  vae_dir = str(tmp_path / 'vae')
  run_launch([*TINY_VAE, f'--workdir={vae_dir}', '--config.training.num_steps=1'])

  def no_data(*args, **kwargs):
    raise AssertionError('load_run loaded data')

  for name in ('load_dataset', 'load_train_data', 'load_held_out'):
    monkeypatch.setattr(datasets, name, no_data)
  config, vae, state = experiments.load_run(vae_dir, parallel.make_mesh(), 'vae', 'field', 'hint')
  assert vae.image_shape == (8, 8, 1) and int(state.step) == 1
  # The restored parameters are the checkpoint's (an independent read of the saved tree).
  ckpt = checkpoint.Checkpointer(vae_dir, async_save=False)
  try:
    saved = ckpt.saved_shapes()
  finally:
    ckpt.close()
  restored = {'/'.join(str(getattr(k, 'key', k)) for k in path): leaf.shape for path, leaf in
              jax.tree_util.tree_flatten_with_path(state.ema_params)[0]}
  assert restored == {name[len('ema_params/'):]: shape for name, shape in saved.items()
                      if name.startswith('ema_params/')}
  latents = vae.encode(state.ema_params, jax.numpy.zeros((2, 8, 8, 1)))[0]
  assert latents.shape == (2, 4, 4, 2) and config.family == 'vae'
