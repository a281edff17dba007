"""Every family's `validate(config)`: the shipped configs pass, nonsense model fields fail
with one line naming the field, before any data is loaded or anything compiles.

In-process and fast; tests/test_errors.py runs the table's cases through launch.py.
"""

import glob
import importlib
import os

import ml_collections
import pytest

from experiments.classifier import checks as classifier
from experiments.diffusion import checks as diffusion
from experiments.gan import checks as gan
from experiments.vae import checks as vae
from gen_jax.platform.errors import UserError
from tests.conftest import REPO

VALIDATORS = {'diffusion': diffusion.validate, 'vae': vae.validate, 'gan': gan.validate,
              'classifier': classifier.validate}


def _config(name: str, **overrides) -> ml_collections.ConfigDict:
  """configs/NAME.py's config without type safety (a command line can give any type),
  with dotted-field overrides."""
  module = importlib.import_module(f'configs.{name}')
  config = ml_collections.ConfigDict(module.get_config().to_dict(), type_safe=False)
  for field, value in overrides.items():
    block, key = field.split('__')
    config[block][key] = value
  return config


def _all_configs() -> list[str]:
  files = glob.glob(os.path.join(REPO, 'configs', '*.py'))
  return sorted(os.path.basename(p)[:-3] for p in files
                if os.path.basename(p) not in ('__init__.py', 'base.py'))


@pytest.mark.parametrize('name', _all_configs())
def test_every_shipped_config_is_valid(name):
  module = importlib.import_module(f'configs.{name}')
  for config in ([module.get_config(n) for n in ('small', 'cifar10')] if name == 'bench_peer'
                 else [module.get_config()]):
    if config.family == 'ldm':  # the U-Net runs on the VAE's 4x4 latent
      diffusion.validate(config, image_size=None)
      diffusion.validate_unet(config.model, 4, 'the VAE latent side')
    else:
      VALIDATORS[config.family](config)


def _refused(validate, config, *needles):
  with pytest.raises(UserError) as excinfo:
    validate(config)
  message = str(excinfo.value)
  assert '\n' not in message
  for needle in needles:
    assert needle in message, message


@pytest.mark.parametrize('overrides,needles', [
    ({'model__ch': 0}, ['model.ch must be an integer >= 4, not 0']),
    # The sinusoidal time embedding divides by ch / 2 - 1.
    ({'model__ch': 2}, ['model.ch must be an integer >= 4']),
    ({'model__ch': 'x'}, ["model.ch must be an integer >= 4, not 'x'"]),
    ({'model__ch_mult': ()}, ['model.ch_mult must be a tuple of one or more integers', 'not ()']),
    ({'model__ch_mult': (1, 0)}, ['model.ch_mult', 'not (1, 0)']),
    ({'model__ch_mult': ('(1,a)',)}, ['model.ch_mult', 'not (1,a)']),
    ({'model__ch_mult': (1, 2.5)}, ['model.ch_mult', 'not (1, 2.5)']),
    ({'model__ch_mult': 'abc'}, ['model.ch_mult', "not 'abc'"]),
    ({'model__num_groups': 0}, ['model.num_groups must be an integer >= 1, not 0']),
    ({'model__num_groups': 5}, ['model.num_groups=5 must divide', '[32, 64]']),
    # conv_in's ch channels are normalised too, not only ch * mult.
    ({'model__ch': 4, 'model__ch_mult': (2, 4), 'model__num_groups': 8},
     ['4 is not a multiple of 8']),
    ({'model__num_res_blocks': -1}, ['model.num_res_blocks must be an integer >= 0']),
    ({'model__dropout': 1.0}, ['model.dropout must be a number in [0, 1)']),
    # The digits default trains at 8x8: its U-Net levels are 8, 4, 2.
    ({'model__attn_resolutions': (5,)}, ['model.attn_resolutions=(5,)', '[8, 4, 2]']),
    ({'model__attn_resolutions': ('x',)},
     ['model.attn_resolutions must be a tuple of zero or more']),
    ({'data__image_size': 14}, ['data.image_size=14 must divide by 2^(len(model.ch_mult)-1)=4']),
    ({'diffusion__num_timesteps': 1}, ['diffusion.num_timesteps must be an integer >= 2']),
    ({'diffusion__beta_start': 0.0}, ['0 < diffusion.beta_start <= diffusion.beta_end < 1']),
    ({'diffusion__beta_end': 1.0}, ['diffusion.beta_end < 1']),
])
def test_diffusion_refuses(overrides, needles):
  _refused(diffusion.validate, _config('ddpm', **overrides), *needles)


def test_unet_attention_is_checked_against_the_latent_side():
  config = _config('ldm')
  diffusion.validate(config, image_size=None)  # no size yet: no size checks
  with pytest.raises(UserError, match=r'the VAE latent side=4: \[4, 2\]'):
    diffusion.validate_unet(_config('ldm', model__attn_resolutions=(8,)).model, 4,
                            'the VAE latent side')


@pytest.mark.parametrize('overrides,needles', [
    ({'model__features': ()}, ['model.features must be a tuple of one or more integers']),
    ({'model__features': (16, 0)}, ['model.features', 'not (16, 0)']),
    ({'model__features': ('(16,a)',)}, ['model.features', 'not (16,a)']),
    ({'model__hidden': 0}, ['model.hidden must be an integer >= 1, not 0']),
    ({'vae__latent_shape': (0,)}, ['vae.latent_shape', 'not (0,)']),
    ({'vae__latent_shape': (2, 2)}, ['vae.latent_shape must be (k,) or (h, w, c)']),
    ({'data__image_size': 12, 'model__features': (8, 8, 8)},
     ['data.image_size=12 must divide by']),
])
def test_vae_refuses(overrides, needles):
  _refused(vae.validate, _config('vae', **overrides), *needles)


@pytest.mark.parametrize('overrides,needles', [
    ({'model__z_dim': 0}, ['model.z_dim must be an integer >= 1, not 0']),
    ({'model__g_ch': 0}, ['model.g_ch must be an integer >= 1']),
    ({'model__d_ch': -4}, ['model.d_ch must be an integer >= 1']),
    ({'model__layers': 0}, ['model.layers must be an integer >= 1']),
    ({'model__embed_dim': 1.5}, ['model.embed_dim must be an integer >= 1, not 1.5']),
    ({'model__bn_momentum': 1.0}, ['model.bn_momentum must be a number in [0, 1)']),
    ({'gan__d_steps': 0}, ['gan.d_steps must be an integer >= 1']),
    ({'data__image_size': 24}, ['data.image_size=24 must be 4 * 2^k']),
    ({'gan__cluster_classes': -1}, ['gan.cluster_classes must be an integer >= 0, not -1']),
    ({'gan__cluster_classes': 20, 'gan__conditional': True},
     ['gan.cluster_classes=20 conditions the players', 'gan.conditional=False']),
    ({'gan__latent_classes': 10, 'gan__conditional': True, 'gan__cluster_classes': 0},
     ['gan.latent_classes=10 is a code for an unconditional G']),
])
def test_gan_refuses(overrides, needles):
  _refused(gan.validate, _config('dcgan', **overrides), *needles)


@pytest.mark.parametrize('overrides,needles', [
    ({'model__features': ()}, ['model.features must be a tuple of one or more integers']),
    ({'model__features': (32, 'a')}, ['model.features', "not (32, 'a')"]),
    ({'model__feature_dim': 0}, ['model.feature_dim must be an integer >= 1']),
    ({'model__num_groups': 0}, ['model.num_groups must be an integer >= 1, not 0']),
    ({'model__num_groups': 3}, ['model.num_groups=3 must divide', '[32, 64, 128]']),
    ({'model__dropout': -0.1}, ['model.dropout must be a number in [0, 1)']),
    ({'model__label_smoothing': 1.0}, ['model.label_smoothing must be a number in [0, 1)']),
    ({'model__features': (8,) * 6}, ['data.image_size=16 is too small for 6 levels']),
])
def test_classifier_refuses(overrides, needles):
  _refused(classifier.validate, _config('classifier_digits', **overrides), *needles)


def test_an_old_run_config_reads_with_the_new_field_names():
  from experiments.gan import schema as gan_schema  # pylint: disable=g-import-not-at-top
  from experiments.vae import schema as vae_schema  # pylint: disable=g-import-not-at-top
  from gen_jax.platform import run_config  # pylint: disable=g-import-not-at-top
  old = {'family': 'gan', 'seed': 3, 'gan': {'g_lr': 1e-3, 'd_lr': 2e-3, 'ema_decay': 0.9,
                                             'ema_start': 5, 'loss': 'hinge'},
         'optim': {'lr': 2e-4, 'b1': 0.5}}
  assert run_config.upgrade(old, gan_schema.RENAMED, gan_schema.DROPPED_WITH_RENAMES) == {
      'family': 'gan', 'seed': 3, 'gan': {'loss': 'hinge'},
      'optim': {'b1': 0.5, 'g_lr': 1e-3, 'd_lr': 2e-3, 'ema_decay': 0.9, 'ema_start': 5}}
  assert old['gan']['g_lr'] == 1e-3  # the caller's dict is left as it was
  vae = {'family': 'vae', 'vae': {'eval_batch_size': 512, 'eval_examples': 7},
         'eval': {'batch_size': 256}, 'optim': {'lr': 1e-3}}
  # eval.batch_size was already there (the sample batch): it wins; the examples move.
  assert run_config.upgrade(vae, vae_schema.RENAMED, vae_schema.DROPPED_WITH_RENAMES) == {
      'family': 'vae', 'vae': {}, 'eval': {'batch_size': 256, 'held_out_examples': 7},
      'optim': {'lr': 1e-3}}


@pytest.mark.parametrize('name', sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', '*.py'))
    if not p.endswith(('__init__.py', 'base.py'))))
def test_no_config_uses_a_renamed_field(name):
  import experiments  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config()
  flat = {f'{block}.{k}' for block, fields in config.to_dict().items()
          if isinstance(fields, dict) for k in fields}
  assert not flat & set(experiments.renamed_fields()), name
  if config.family == 'gan':  # one rate per player, and no unused optim.lr
    assert {'optim.g_lr', 'optim.d_lr', 'optim.ema_decay', 'optim.ema_start'} <= flat
    assert 'optim.lr' not in flat
