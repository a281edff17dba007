"""diffusers UNet2DModel import/export against committed diffusers outputs (no torch here).

tests/data/diffusers/ is made by tools/make_diffusers_fixtures.py with diffusers 0.42.1:
tiny random-weight UNet2DModels (cifar_like: a model folder; bedroom_like: a pipeline
folder; defaults_like: diffusers' own defaults and multi-head attention), each with its
outputs on fixed inputs and the final samples of DDPMScheduler / DDIMScheduler stepping it
from the noise gen_jax's samplers draw; cifar_like_bin holds cifar_like's weights as a torch
.bin with diffusers 0.0.x's attention names.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.diffusion import experiment as diffusion
from experiments import export_diffusers
from experiments import import_diffusers
from experiments import ledger
from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules
from gen_jax.interop import diffusers_unet
from gen_jax.platform.errors import UserError
from tests.conftest import REPO, assert_one_line_error, launch_env, run_launch

DATA = os.path.join(REPO, 'tests', 'data', 'diffusers')
MODELS = ('cifar_like', 'bedroom_like')  # with sampler fixtures tested here
# diffusers' own defaults where they differ from the DDPM U-Net (flip_sin_to_cos=True,
# freq_shift=0, norm_eps=1e-5, downsample_padding=1) and multi-head attention.
NETWORKS = MODELS + ('defaults_like',)
# float32 against float32 (torch vs XLA convolutions, sums in other orders): the error
# relative to the output's scale, max |ours - diffusers| / max |diffusers|.
NETWORK_RTOL = 1e-5
SAMPLER_RTOL = 1e-4  # 5-20 network evaluations, each step's error carried on
# The fixtures hold DDIM eta 0 and 0.5 for both models; one each keeps the test short.
DDIM_CASES = {'cifar_like': (1, 0.0), 'bedroom_like': (2, 0.5)}  # (PRNGKey seed, eta)


def rel_err(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def expected(name):
  with np.load(os.path.join(DATA, name, 'expected.npz')) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='session')
def imported(tmp_path_factory):
  """name -> (workdir, imported.json record), each imported once with configs/ddpm.py."""
  runs = {}
  for name in NETWORKS:
    workdir = str(tmp_path_factory.mktemp('imported') / name)
    record = import_diffusers.import_checkpoint(os.path.join(DATA, name), workdir)
    runs[name] = workdir, record
  return runs


@pytest.fixture(scope='session')
def denoisers(imported):
  return {name: diffusion.load_denoiser(workdir) for name, (workdir, _) in imported.items()}


@pytest.mark.parametrize('name', NETWORKS)
def test_imported_network_equals_diffusers(denoisers, name):
  e = expected(name)
  out = denoisers[name](e['x'], e['t'])  # t = 0, 17, 999
  err = rel_err(out, e['out'])
  print(f'{name}: max relative error of the imported network {err:.2e}')
  assert out.shape == e['out'].shape
  assert err < NETWORK_RTOL


def test_layouts_and_mapped_fields(imported):
  cifar, bedroom = (json.load(open(os.path.join(imported[name][0], 'imported.json')))
                    for name in MODELS)
  assert cifar['layout'] == 'model' and bedroom['layout'] == 'pipeline'
  assert set(cifar['files_sha256']) == {
      'config.json', 'scheduler_config.json', 'diffusion_pytorch_model.safetensors'}
  assert set(bedroom['files_sha256']) == {
      'unet/config.json', 'scheduler/scheduler_config.json',
      'unet/diffusion_pytorch_model.safetensors'}
  options = {k: cifar['mapped_fields'].pop(k) for k in (
      'model.norm_eps', 'model.flip_sin_to_cos', 'model.freq_shift',
      'model.downsample_padding', 'model.attn_head_dim')}
  assert options == {'model.norm_eps': 1e-6, 'model.flip_sin_to_cos': False,
                     'model.freq_shift': 1.0, 'model.downsample_padding': 0,
                     'model.attn_head_dim': 0}
  defaults = json.load(open(os.path.join(imported['defaults_like'][0], 'imported.json')))
  assert {k: defaults['mapped_fields'][k] for k in options} == {
      'model.norm_eps': 1e-5, 'model.flip_sin_to_cos': True, 'model.freq_shift': 0.0,
      'model.downsample_padding': 1, 'model.attn_head_dim': 2}
  assert cifar['mapped_fields'] == {
      'data.image_size': 16, 'model.ch': 4, 'model.ch_mult': [1, 2, 2],
      'model.num_res_blocks': 2, 'model.attn_resolutions': [8], 'model.num_groups': 2,
      'model.resample_with_conv': True, 'diffusion.schedule': 'linear',
      'diffusion.num_timesteps': 20, 'diffusion.prediction': 'eps', 'sampling.clip_x0': True,
      'sampling.ddpm_variance': 'large', 'diffusion.beta_start': 1e-3,
      'diffusion.beta_end': 0.2}
  fields = bedroom['mapped_fields']
  assert fields['model.ch_mult'] == [1, 1, 2, 2, 2] and fields['model.attn_resolutions'] == [4]
  assert (fields['diffusion.schedule'], fields['diffusion.prediction'],
          fields['sampling.clip_x0'], fields['sampling.ddpm_variance']) == (
              'cosine', 'v', False, 'small')


@pytest.mark.parametrize('name', MODELS)
def test_ddpm_and_ddim_equal_diffusers_schedulers(imported, denoisers, name):
  workdir, record = imported[name]
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  d, s = config['diffusion'], config['sampling']
  schedule = schedules.make_schedule(d['schedule'], d['num_timesteps'], d['beta_start'],
                                     d['beta_end'])
  e = expected(name)
  shape = (2,) + e['x'].shape[1:]
  f = denoisers[name]
  ddpm = samplers.ddpm_sample(f, schedule, shape, jax.random.PRNGKey(0), d['prediction'],
                              s['clip_x0'], s['ddpm_variance'])
  errors = {'ddpm': rel_err(ddpm, e['ddpm'])}
  tau = samplers.ddim_timesteps(d['num_timesteps'], 5, 'leading')
  np.testing.assert_array_equal(tau[::-1], e['ddim_timesteps'])
  seed, eta = DDIM_CASES[name]
  ddim = samplers.ddim_sample(f, schedule, shape, jax.random.PRNGKey(seed), 5, eta,
                              'leading', d['prediction'], s['clip_x0'])
  errors[f'ddim_eta{eta:g}'] = rel_err(ddim, e[f'ddim_eta{eta:g}'])
  print(f'{name} ({record["mapped_fields"]["diffusion.schedule"]}, '
        f'{d["prediction"]}): max relative errors {errors}')
  assert max(errors.values()) < SAMPLER_RTOL, errors


def test_export_then_import_is_bit_exact(imported, tmp_path):
  workdir, record = imported['cifar_like']
  out = str(tmp_path / 'export')
  export_diffusers.export_run(workdir, out)  # the EMA params of the imported checkpoint
  original = diffusers_unet.read_weights(
      os.path.join(DATA, 'cifar_like', diffusers_unet.WEIGHTS_SAFETENSORS))
  exported = diffusers_unet.read_folder(out)
  assert exported.layout == 'model'
  assert set(exported.state_dict) == set(original)
  for key, value in original.items():  # diffusers -> checkpoint -> diffusers, bit for bit
    assert exported.state_dict[key].dtype == value.dtype
    assert exported.state_dict[key].tobytes() == value.tobytes(), key
  # Importing the export maps to the same gen_jax config (so, with the same bytes, the
  # same checkpoint).
  spec = diffusers_unet.spec_from_diffusers_config(exported.unet_config)
  fields = dict(spec.config_fields(),
                **diffusers_unet.fields_from_scheduler_config(exported.scheduler_config))
  assert json.loads(json.dumps(fields)) == json.loads(json.dumps(record['mapped_fields']))
  # What the fixture script saw diffusers do with such an export.
  with open(os.path.join(DATA, 'export_check.json')) as f:
    check = json.load(f)
  assert check['state_dict_bit_equal'] and check['unet_max_abs_diff'] == 0.0
  assert check['DDPMPipeline.from_pretrained'] == 'loaded'


@pytest.mark.parametrize('folder', ['bedroom_like/unet', 'defaults_like'])
def test_params_round_trip_through_the_state_dict(folder):
  spec = diffusers_unet.spec_from_diffusers_config(
      json.load(open(os.path.join(DATA, folder, 'config.json'))))
  sd = diffusers_unet.read_weights(
      os.path.join(DATA, folder, diffusers_unet.WEIGHTS_SAFETENSORS))
  back = diffusers_unet.state_dict_from_params(diffusers_unet.params_from_state_dict(sd, spec),
                                               spec)
  assert set(back) == set(sd) and all(np.array_equal(back[k], sd[k]) for k in sd)
  assert diffusers_unet.spec_from_diffusers_config(
      diffusers_unet.diffusers_config_from_spec(spec)) == spec


def test_torch_bin_with_legacy_attention_names():
  """google/ddpm-* checkpoints are torch .bin files naming attention query/key/value/
  proj_attn (diffusers 0.0.x): cifar_like_bin/ holds cifar_like's weights so, and reads
  (without torch) to the same parameters, bit for bit."""
  legacy = diffusers_unet.read_folder(os.path.join(DATA, 'cifar_like_bin'))
  modern = diffusers_unet.read_folder(os.path.join(DATA, 'cifar_like'))
  assert set(legacy.files) == {'config.json', 'scheduler_config.json',
                               'diffusion_pytorch_model.bin'}
  assert any('.query.' in k for k in legacy.state_dict)
  spec = diffusers_unet.spec_from_diffusers_config(legacy.unet_config)
  a = diffusers_unet.params_from_state_dict(legacy.state_dict, spec)
  b = diffusers_unet.params_from_state_dict(modern.state_dict, spec)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  assert all(x.tobytes() == y.tobytes() for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


UNET_REFUSALS = [
    ({'downsample_padding': 2}, 'downsample_padding=2'),
    ({'attention_head_dim': 3}, 'attention_head_dim=3'),
    ({'time_embedding_type': 'fourier'}, "time_embedding_type='fourier'"),
    ({'resnet_time_scale_shift': 'scale_shift'}, "resnet_time_scale_shift='scale_shift'"),
    ({'act_fn': 'gelu'}, "act_fn='gelu'"),
    ({'cross_attention_dim': 64}, 'cross_attention_dim=64'),
    ({'down_block_types': ['DownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']},
     "down_block_types='CrossAttnDownBlock2D'"),
    ({'up_block_types': ['UpBlock2D', 'UpBlock2D', 'AttnUpBlock2D']}, 'up_block_types='),
    ({'num_class_embeds': 10}, 'num_class_embeds=10'),
    ({'_class_name': 'UNet2DConditionModel'}, "_class_name='UNet2DConditionModel'"),
]


@pytest.mark.parametrize('change,named', UNET_REFUSALS)
def test_unmappable_unet_is_refused_with_one_line(change, named):
  with open(os.path.join(DATA, 'cifar_like', 'config.json')) as f:
    config = dict(json.load(f), **change)
  with pytest.raises(UserError) as info:
    diffusers_unet.spec_from_diffusers_config(config)
  message = str(info.value)
  assert named in message and '\n' not in message, message


@pytest.mark.parametrize('change,named', [
    ({'beta_schedule': 'sigmoid'}, "beta_schedule='sigmoid'"),
    ({'variance_type': 'learned_range'}, "variance_type='learned_range'"),
    ({'thresholding': True}, 'thresholding=True'),
    ({'trained_betas': [0.1, 0.2]}, 'trained_betas='),
])
def test_unmappable_scheduler_is_refused_with_one_line(change, named):
  with open(os.path.join(DATA, 'cifar_like', 'scheduler_config.json')) as f:
    config = dict(json.load(f), **change)
  with pytest.raises(UserError) as info:
    diffusers_unet.fields_from_scheduler_config(config)
  assert named in str(info.value) and '\n' not in str(info.value)


def test_import_command_refuses_in_one_line(tmp_path):
  bad = tmp_path / 'bad'
  shutil.copytree(os.path.join(DATA, 'cifar_like'), bad)
  config = json.loads((bad / 'config.json').read_text())
  (bad / 'config.json').write_text(json.dumps(dict(config, act_fn='gelu')))
  proc = subprocess.run([sys.executable, '-m', 'experiments.import_diffusers', f'--source={bad}',
                         f'--workdir={tmp_path / "run"}'], cwd=REPO, env=launch_env(1),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert_one_line_error(proc, "act_fn='gelu'")
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')  # nothing half-written


def test_hub_id_without_huggingface_hub(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # import fails, no network
  with pytest.raises(UserError, match=r'gen_jax\[hub\]'):
    import_diffusers.import_checkpoint('google/ddpm-cifar10-32', str(tmp_path / 'run'))


def test_import_never_overwrites_a_run(imported):
  workdir, _ = imported['cifar_like']
  with pytest.raises(UserError, match='already holds checkpoints'):
    import_diffusers.import_checkpoint(os.path.join(DATA, 'cifar_like'), workdir)


def test_export_refuses_what_unet2dmodel_cannot_express(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  from configs import ddpm  # pylint: disable=g-import-not-at-top
  config = ddpm.get_config()
  config.diffusion.class_conditional = True
  with pytest.raises(UserError, match='class_conditional'):
    diffusers_unet.spec_from_gen_jax_config(config, channels=1)
  config = ml_collections.ConfigDict(ddpm.get_config())
  config.model.resample_with_conv = False
  with pytest.raises(UserError, match='resample_with_conv'):
    diffusers_unet.spec_from_gen_jax_config(config, channels=1)
  with pytest.raises(UserError, match='not a gen_jax run'):
    export_diffusers.export_run(str(tmp_path), str(tmp_path / 'out'))


def test_scaled_linear_schedule_closed_form():
  betas = np.asarray(schedules.make_schedule('scaled_linear', 50, 0.00085, 0.012).betas)
  closed = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 50) ** 2
  np.testing.assert_allclose(betas, closed, rtol=1e-6)
  assert diffusers_unet.fields_from_scheduler_config(
      {'beta_schedule': 'scaled_linear', 'beta_start': 0.00085, 'beta_end': 0.012})[
          'diffusion.schedule'] == 'scaled_linear'


def test_sample_mode_and_ledger_on_an_imported_run(imported, tmp_path):
  workdir, record = imported['bedroom_like']  # one channel, as the embedded digits
  run = str(tmp_path / 'bedroom_like')
  shutil.copytree(workdir, run)
  proc = run_launch(['--config=configs/ddpm.py', f'--workdir={run}', '--mode=sample',
                     '--config.sampling.num_samples=4', '--config.sampling.sampler=ddpm',
                     *record['launch_overrides']])
  assert os.path.exists(os.path.join(run, 'samples', 'sample_step0000000_ddpm20.png')), \
      proc.stdout
  with np.load(os.path.join(run, 'samples', 'sample_step0000000_ddpm20.npz')) as data:
    assert data['images'].shape == (4, 32, 32, 1)
  # The ledger marks the run's rows as imported, a trained run's as trained.
  manifest = {'metrics': {'fid': 1.0}, 'config': {}, 'date': '2026-01-01'}
  for name in ('bedroom_like', 'trained'):
    os.makedirs(tmp_path / name / 'eval', exist_ok=True)
    (tmp_path / name / 'eval' / '0.json').write_text(json.dumps(manifest))
  table = ledger.ledger_markdown(str(tmp_path))
  rows = [line for line in table.splitlines() if '| fid |' in line]
  assert any(f'imported {DATA}/bedroom_like' in r and '(bedroom_like' in r for r in rows), table
  assert any(r.rstrip(' |').endswith('trained') and '(trained' in r for r in rows), table


def test_timestep_embedding_options_closed_form():
  from gen_jax.models import layers  # pylint: disable=g-import-not-at-top
  t = np.array([0, 7, 999])
  for flip, shift in ((False, 1.0), (True, 0.0)):
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / (4 - shift))
    args = t[:, None] * freqs[None, :]
    parts = [np.sin(args), np.cos(args)]
    closed = np.concatenate(parts[::-1] if flip else parts, axis=-1)
    emb = layers.timestep_embedding(jax.numpy.asarray(t), 8, flip_sin_to_cos=flip,
                                    freq_shift=shift)
    np.testing.assert_allclose(emb, closed, rtol=1e-5, atol=1e-5)


def test_load_denoiser_refuses_a_non_run(tmp_path):
  with pytest.raises(UserError, match='not a gen_jax run'):
    diffusion.load_denoiser(str(tmp_path))
