"""diffusers `UNet2DModel` checkpoints <-> the gen_jax U-Net (gen_jax/models/unet.py).

Pure numpy: weights are read with `safetensors.numpy` (or a `.bin` with the torch-free
reader of gen_jax/interop/torch_files.py), so nothing here needs torch.

The gen_jax U-Net is the DDPM U-Net of Ho et al. (2020), the network of the `google/ddpm-*`
checkpoints. In diffusers' terms it is a `UNet2DModel` with act_fn='silu',
time_embedding_type='positional', downsample_type=upsample_type='conv',
resnet_time_scale_shift='default', self-attention in the middle block,
mid_block_scale_factor=1, no class embedding, in_channels=out_channels, and for each level
either (DownBlock2D, UpBlock2D) or (AttnDownBlock2D, AttnUpBlock2D). flip_sin_to_cos,
freq_shift, norm_eps, downsample_padding (0 or 1) and attention_head_dim map to the U-Net's
options of those names (`model.attn_head_dim`: 0 for None, one head of all channels); the
google checkpoints use the DDPM values False, 1, 1e-6, 0 and None.

Any other value is refused with one line naming the key. The layers correspond one to one
(`_layer_names`): a diffusers resnet is a `ResBlock_k`, an attention an `AttnBlock_k`, in the
order the gen_jax U-Net creates them. Conv kernels are OIHW there and HWIO here; linear
weights (out, in) there and (in, out) here; the resnet's 1x1 `conv_shortcut` is the Dense
`skip`; attention's `to_q`, `to_k`, `to_v` are the column blocks of the Dense `qkv`;
GroupNorm's `weight` is `scale`.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

from gen_jax.interop import torch_files
from gen_jax.platform.errors import UserError

MODEL_CONFIG = 'config.json'
SCHEDULER_CONFIG = 'scheduler_config.json'
PIPELINE_INDEX = 'model_index.json'
WEIGHTS_SAFETENSORS = 'diffusion_pytorch_model.safetensors'
WEIGHTS_BIN = 'diffusion_pytorch_model.bin'

# UNet2DModel's keyword defaults: a key missing from a config.json has this value there.
_DIFFUSERS_DEFAULTS = {
    'sample_size': None, 'in_channels': 3, 'out_channels': 3, 'center_input_sample': False,
    'time_embedding_type': 'positional', 'time_embedding_dim': None, 'freq_shift': 0,
    'flip_sin_to_cos': True,
    'down_block_types': ('DownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D'),
    'mid_block_type': 'UNetMidBlock2D',
    'up_block_types': ('AttnUpBlock2D', 'AttnUpBlock2D', 'AttnUpBlock2D', 'UpBlock2D'),
    'block_out_channels': (224, 448, 672, 896), 'layers_per_block': 2,
    'mid_block_scale_factor': 1, 'downsample_padding': 1, 'downsample_type': 'conv',
    'upsample_type': 'conv', 'dropout': 0.0, 'act_fn': 'silu', 'attention_head_dim': 8,
    'norm_num_groups': 32, 'attn_norm_num_groups': None, 'norm_eps': 1e-5,
    'resnet_time_scale_shift': 'default', 'add_attention': True, 'class_embed_type': None,
    'num_class_embeds': None, 'num_train_timesteps': None,
}
# Keys whose value the gen_jax U-Net fixes: what it must be, and what it means here.
_FIXED = {
    'center_input_sample': (False, 'inputs are already in [-1, 1]'),
    'time_embedding_type': ('positional', 'the sinusoidal embedding'),
    'mid_block_type': ('UNetMidBlock2D', 'resnet, attention, resnet'),
    'mid_block_scale_factor': (1, 'unscaled residuals'),
    'downsample_type': ('conv', 'a stride-2 conv'),
    'upsample_type': ('conv', 'nearest 2x, then a 3x3 conv'),
    'act_fn': ('silu', 'SiLU'),
    'resnet_time_scale_shift': ('default', 'the time embedding is added'),
    'add_attention': (True, 'attention in the middle block'),
    'class_embed_type': (None, 'no class embedding'),
    'num_class_embeds': (None, 'no class embedding'),
}
# gen_jax's U-Net options with their values in configs saved before them (the DDPM U-Net).
_UNET_OPTION_DEFAULTS = {'norm_eps': 1e-6, 'flip_sin_to_cos': False, 'freq_shift': 1.0,
                         'downsample_padding': 0, 'attn_head_dim': 0}
_KNOWN_KEYS = set(_DIFFUSERS_DEFAULTS) | {'_class_name', '_diffusers_version', '_name_or_path'}
_DOWN = {'DownBlock2D': False, 'AttnDownBlock2D': True}  # block type -> has attention
_UP = {'UpBlock2D': False, 'AttnUpBlock2D': True}


@dataclasses.dataclass(frozen=True)
class UNetSpec:
  """The architecture both sides agree on (gen_jax's model fields plus the image shape).

  Attributes:
    image_size: H = W of the images (diffusers' sample_size).
    channels: image channels (in_channels = out_channels).
    ch: base channels (block_out_channels[0]).
    ch_mult: per-level multipliers of ch (block_out_channels / ch).
    num_res_blocks: resnets per level on the way down (layers_per_block).
    attn_resolutions: resolutions (pixels) of the levels with attention.
    num_groups: GroupNorm groups (norm_num_groups).
    dropout: residual-block dropout (diffusers' `dropout`; no effect on outputs at eval).
    norm_eps, flip_sin_to_cos, freq_shift, downsample_padding, attn_head_dim: the U-Net's
      numerics options (gen_jax/models/unet.py).
  """
  image_size: int
  channels: int
  ch: int
  ch_mult: tuple[int, ...]
  num_res_blocks: int
  attn_resolutions: tuple[int, ...]
  num_groups: int
  dropout: float = 0.0
  norm_eps: float = 1e-6
  flip_sin_to_cos: bool = False
  freq_shift: float = 1.0
  downsample_padding: int = 0
  attn_head_dim: int = 0

  def resolution(self, level: int) -> int:
    return self.image_size // 2 ** level

  def has_attention(self, level: int) -> bool:
    return self.resolution(level) in self.attn_resolutions

  def config_fields(self) -> dict[str, Any]:
    """{'model.ch': 128, ...}: the gen_jax config fields this architecture sets."""
    return {'data.image_size': self.image_size, 'model.ch': self.ch,
            'model.ch_mult': tuple(self.ch_mult), 'model.num_res_blocks': self.num_res_blocks,
            'model.attn_resolutions': tuple(self.attn_resolutions),
            'model.num_groups': self.num_groups, 'model.resample_with_conv': True,
            'model.norm_eps': self.norm_eps, 'model.flip_sin_to_cos': self.flip_sin_to_cos,
            'model.freq_shift': self.freq_shift,
            'model.downsample_padding': self.downsample_padding,
            'model.attn_head_dim': self.attn_head_dim}


def _refuse(key: str, value, why: str) -> UserError:
  return UserError(f'cannot map the diffusers UNet2DModel config: {key}={value!r} '
                   f'({why}); gen_jax\'s U-Net has no such option.')


def spec_from_diffusers_config(config: dict) -> UNetSpec:
  """The gen_jax architecture of a diffusers `UNet2DModel` config (its config.json).

  Raises:
    UserError: one line naming the first key whose value the gen_jax U-Net cannot express.
  """
  if config.get('_class_name', 'UNet2DModel') != 'UNet2DModel':
    raise _refuse('_class_name', config['_class_name'], 'only UNet2DModel is supported')
  for key in sorted(config):
    if key not in _KNOWN_KEYS:
      raise _refuse(key, config[key], 'a key UNet2DModel does not have')
  c = dict(_DIFFUSERS_DEFAULTS, **config)
  for key, (wanted, meaning) in _FIXED.items():
    if c[key] != wanted:
      raise _refuse(key, c[key], f'gen_jax supports only {wanted!r}: {meaning}')
  if c['downsample_padding'] not in (0, 1):
    raise _refuse('downsample_padding', c['downsample_padding'], 'gen_jax pads by 0 or 1')
  boc = [int(k) for k in c['block_out_channels']]
  ch = boc[0]
  if any(k % ch for k in boc):
    raise _refuse('block_out_channels', boc, 'every level must be a multiple of the first')
  if c['in_channels'] != c['out_channels']:
    raise _refuse('out_channels', c['out_channels'],
                  f'gen_jax outputs as many channels as it takes, in_channels={c["in_channels"]}')
  if c['time_embedding_dim'] not in (None, 4 * ch):
    raise _refuse('time_embedding_dim', c['time_embedding_dim'], f'gen_jax uses 4 * {ch}')
  if c['attn_norm_num_groups'] not in (None, c['norm_num_groups']):
    raise _refuse('attn_norm_num_groups', c['attn_norm_num_groups'],
                  'attention norms use norm_num_groups')
  size = c['sample_size']
  if isinstance(size, (list, tuple)):
    if len(set(size)) != 1:
      raise _refuse('sample_size', size, 'only square images')
    size = size[0]
  if not isinstance(size, int) or size % 2 ** (len(boc) - 1):
    raise _refuse('sample_size', size,
                  f'an integer image size divisible by 2^{len(boc) - 1} is needed')
  down, up = list(c['down_block_types']), list(c['up_block_types'])
  if len(down) != len(boc) or len(up) != len(boc):
    raise _refuse('down_block_types', down, 'one down and one up block per block_out_channels')
  for key, types, known in (('down_block_types', down, _DOWN), ('up_block_types', up, _UP)):
    for block in types:
      if block not in known:
        raise _refuse(key, block, f'gen_jax has only {", ".join(known)}')
  attention = [_DOWN[b] for b in down]
  if [_UP[b] for b in up] != attention[::-1]:
    raise _refuse('up_block_types', up, 'attention must sit at the same levels as in '
                  f'down_block_types {down}')
  head_dim = c['attention_head_dim']
  for level, has_attention in list(enumerate(attention)) + [(len(boc) - 1, True)]:
    if has_attention and head_dim is not None and boc[level] % head_dim:
      raise _refuse('attention_head_dim', head_dim,
                    f'it must divide the {boc[level]} channels of every attention')
  if any(k % c['norm_num_groups'] for k in boc):
    raise _refuse('norm_num_groups', c['norm_num_groups'], 'must divide every level')
  return UNetSpec(
      image_size=size, channels=int(c['in_channels']), ch=ch,
      ch_mult=tuple(k // ch for k in boc), num_res_blocks=int(c['layers_per_block']),
      attn_resolutions=tuple(size // 2 ** i for i, a in enumerate(attention) if a),
      num_groups=int(c['norm_num_groups']), dropout=float(c['dropout'] or 0.0),
      norm_eps=float(c['norm_eps']), flip_sin_to_cos=bool(c['flip_sin_to_cos']),
      freq_shift=float(c['freq_shift']), downsample_padding=int(c['downsample_padding']),
      attn_head_dim=int(head_dim or 0))


def diffusers_config_from_spec(spec: UNetSpec) -> dict:
  """The `UNet2DModel` config.json that builds `spec`'s network in diffusers."""
  levels = range(len(spec.ch_mult))
  attention = [spec.has_attention(level) for level in levels]
  return {
      '_class_name': 'UNet2DModel', 'sample_size': spec.image_size,
      'in_channels': spec.channels, 'out_channels': spec.channels,
      'block_out_channels': [spec.ch * m for m in spec.ch_mult],
      'layers_per_block': spec.num_res_blocks,
      'down_block_types': ['AttnDownBlock2D' if a else 'DownBlock2D' for a in attention],
      'up_block_types': ['AttnUpBlock2D' if a else 'UpBlock2D' for a in attention[::-1]],
      'norm_num_groups': spec.num_groups, 'attention_head_dim': spec.attn_head_dim or None,
      'dropout': spec.dropout, 'norm_eps': spec.norm_eps,
      'flip_sin_to_cos': spec.flip_sin_to_cos, 'freq_shift': spec.freq_shift,
      'downsample_padding': spec.downsample_padding,
      **{key: wanted for key, (wanted, _) in _FIXED.items()},
  }


def spec_from_gen_jax_config(config, channels: int) -> UNetSpec:
  """The architecture of a gen_jax diffusion config (its `model` and `data` blocks).

  Raises:
    UserError: the config's U-Net is one UNet2DModel cannot express.
  """
  m = config.model
  if not m.resample_with_conv:
    raise UserError('cannot export model.resample_with_conv=False: UNet2DModel\'s blocks '
                    'always resample with convolutions.')
  if config.diffusion.class_conditional:
    raise UserError('cannot export diffusion.class_conditional=True: UNet2DModel\'s class '
                    'embedding has no null class for guidance.')
  size = config.data.image_size
  levels = {size // 2 ** i for i in range(len(m.ch_mult))}
  for resolution in m.attn_resolutions:
    if resolution not in levels:
      raise UserError(f'cannot export model.attn_resolutions={tuple(m.attn_resolutions)}: '
                      f'{resolution} is no level\'s resolution ({sorted(levels)}).')
  options = {k: m.get(k, default) for k, default in _UNET_OPTION_DEFAULTS.items()}
  return UNetSpec(image_size=size, channels=channels, ch=m.ch, ch_mult=tuple(m.ch_mult),
                  num_res_blocks=m.num_res_blocks,
                  attn_resolutions=tuple(sorted(m.attn_resolutions, reverse=True)),
                  num_groups=m.num_groups, dropout=float(m.dropout), **options)


# --- parameter names ---------------------------------------------------------------------

def _layer_names(spec: UNetSpec) -> list[tuple[str, str, str]]:
  """(kind, diffusers prefix, gen_jax path) of every layer, in the U-Net's creation order.

  kind is 'resnet', 'attention', 'conv', 'linear' or 'norm'. gen_jax numbers its ResBlock,
  AttnBlock, Downsample and Upsample modules in the order UNet.__call__ creates them.
  """
  names = [('conv', 'conv_in', 'conv_in'), ('linear', 'time_embedding.linear_1', 'temb_dense0'),
           ('linear', 'time_embedding.linear_2', 'temb_dense1')]
  count = {'ResBlock': 0, 'AttnBlock': 0}

  def block(kind, prefix, module):
    names.append((kind, prefix, f'{module}_{count[module]}'))
    count[module] += 1

  last = len(spec.ch_mult) - 1
  for level in range(last + 1):
    for j in range(spec.num_res_blocks):
      block('resnet', f'down_blocks.{level}.resnets.{j}', 'ResBlock')
      if spec.has_attention(level):
        block('attention', f'down_blocks.{level}.attentions.{j}', 'AttnBlock')
    if level != last:
      names.append(('conv', f'down_blocks.{level}.downsamplers.0.conv',
                    f'Downsample_{level}/conv'))
  block('resnet', 'mid_block.resnets.0', 'ResBlock')
  block('attention', 'mid_block.attentions.0', 'AttnBlock')
  block('resnet', 'mid_block.resnets.1', 'ResBlock')
  for i, level in enumerate(range(last, -1, -1)):
    for j in range(spec.num_res_blocks + 1):
      block('resnet', f'up_blocks.{i}.resnets.{j}', 'ResBlock')
      if spec.has_attention(level):
        block('attention', f'up_blocks.{i}.attentions.{j}', 'AttnBlock')
    if level != 0:
      names.append(('conv', f'up_blocks.{i}.upsamplers.0.conv', f'Upsample_{i}/conv'))
  names += [('norm', 'conv_norm_out', 'norm_out'), ('conv', 'conv_out', 'conv_out')]
  return names


# Old diffusers checkpoints (the google/ddpm-* ones among them) name attention weights
# query/key/value/proj_attn; diffusers renames them on load, and so do we.
_LEGACY_ATTENTION = {'query': 'to_q', 'key': 'to_k', 'value': 'to_v', 'proj_attn': 'to_out.0'}


def _modern_names(state_dict: dict) -> dict:
  renamed = {}
  for name, value in state_dict.items():
    parts = name.split('.')
    if len(parts) >= 3 and 'attentions' in parts and parts[-2] in _LEGACY_ATTENTION:
      name = '.'.join(parts[:-2] + [_LEGACY_ATTENTION[parts[-2]], parts[-1]])
    renamed[name] = value
  return renamed


def _conv_in(w):  # (O, I, kh, kw) -> (kh, kw, I, O)
  return np.transpose(w, (2, 3, 1, 0))


def _conv_out(k):  # (kh, kw, I, O) -> (O, I, kh, kw)
  return np.transpose(k, (3, 2, 0, 1))


def params_from_state_dict(state_dict: dict[str, np.ndarray], spec: UNetSpec) -> dict:
  """A diffusers `UNet2DModel` state dict -> the gen_jax U-Net's {'params': ...} tree.

  Args:
    state_dict: name -> array, as in diffusion_pytorch_model.safetensors.
    spec: the architecture (from `spec_from_diffusers_config`).
  Returns:
    The flax variables {'params': {...}} as float32 numpy arrays.
  Raises:
    UserError: a weight is missing, or the file has weights this architecture lacks.
  """
  sd = {k: np.asarray(v) for k, v in _modern_names(state_dict).items()}
  used = set()

  def take(name):
    if name not in sd:
      raise UserError(f'the diffusers weights lack {name!r}: the file does not hold the '
                      f'network its config.json describes.')
    used.add(name)
    return sd[name].astype(np.float32)

  def convert(kind, prefix):
    if kind == 'conv':
      return {'kernel': _conv_in(take(f'{prefix}.weight')), 'bias': take(f'{prefix}.bias')}
    if kind == 'linear':
      return {'kernel': take(f'{prefix}.weight').T, 'bias': take(f'{prefix}.bias')}
    if kind == 'norm':
      return {'scale': take(f'{prefix}.weight'), 'bias': take(f'{prefix}.bias')}
    if kind == 'resnet':
      out = {'norm1': convert('norm', f'{prefix}.norm1'),
             'conv1': convert('conv', f'{prefix}.conv1'),
             'temb_proj': convert('linear', f'{prefix}.time_emb_proj'),
             'norm2': convert('norm', f'{prefix}.norm2'),
             'conv2': convert('conv', f'{prefix}.conv2')}
      if f'{prefix}.conv_shortcut.weight' in sd:  # a 1x1 conv is a Dense over channels
        out['skip'] = {'kernel': take(f'{prefix}.conv_shortcut.weight')[:, :, 0, 0].T,
                       'bias': take(f'{prefix}.conv_shortcut.bias')}
      return out
    # attention: q, k, v side by side in one Dense, as gen_jax's AttnBlock splits them.
    qkv = [convert('linear', f'{prefix}.{n}') for n in ('to_q', 'to_k', 'to_v')]
    return {'norm': convert('norm', f'{prefix}.group_norm'),
            'qkv': {'kernel': np.concatenate([p['kernel'] for p in qkv], axis=1),
                    'bias': np.concatenate([p['bias'] for p in qkv])},
            'proj_out': convert('linear', f'{prefix}.to_out.0')}

  params = {}
  for kind, prefix, path in _layer_names(spec):
    node = params
    *parents, leaf = path.split('/')
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = convert(kind, prefix)
  unused = sorted(set(sd) - used)
  if unused:
    raise UserError(f'the diffusers weights hold {len(unused)} tensors this architecture '
                    f'lacks, e.g. {unused[0]!r}: the file does not match its config.json.')
  return {'params': params}


def state_dict_from_params(variables: dict, spec: UNetSpec) -> dict[str, np.ndarray]:
  """The inverse of `params_from_state_dict`: gen_jax {'params': ...} -> diffusers names.

  Returns:
    name -> float32 numpy array (contiguous), as `UNet2DModel.state_dict()` names them.
  """
  params = variables['params']
  sd = {}

  def put(name, value):
    sd[name] = np.ascontiguousarray(np.asarray(value, np.float32))

  def convert(kind, prefix, p):
    if kind == 'conv':
      put(f'{prefix}.weight', _conv_out(np.asarray(p['kernel'])))
      put(f'{prefix}.bias', p['bias'])
    elif kind == 'linear':
      put(f'{prefix}.weight', np.asarray(p['kernel']).T)
      put(f'{prefix}.bias', p['bias'])
    elif kind == 'norm':
      put(f'{prefix}.weight', p['scale'])
      put(f'{prefix}.bias', p['bias'])
    elif kind == 'resnet':
      for theirs, ours, sub in (('norm1', 'norm1', 'norm'), ('conv1', 'conv1', 'conv'),
                                ('time_emb_proj', 'temb_proj', 'linear'),
                                ('norm2', 'norm2', 'norm'), ('conv2', 'conv2', 'conv')):
        convert(sub, f'{prefix}.{theirs}', p[ours])
      if 'skip' in p:
        put(f'{prefix}.conv_shortcut.weight', np.asarray(p['skip']['kernel']).T[:, :, None, None])
        put(f'{prefix}.conv_shortcut.bias', p['skip']['bias'])
    else:  # attention
      convert('norm', f'{prefix}.group_norm', p['norm'])
      kernels = np.split(np.asarray(p['qkv']['kernel']), 3, axis=1)
      biases = np.split(np.asarray(p['qkv']['bias']), 3)
      for name, kernel, bias in zip(('to_q', 'to_k', 'to_v'), kernels, biases):
        convert('linear', f'{prefix}.{name}', {'kernel': kernel, 'bias': bias})
      convert('linear', f'{prefix}.to_out.0', p['proj_out'])

  for kind, prefix, path in _layer_names(spec):
    node = params
    for part in path.split('/'):
      node = node[part]
    convert(kind, prefix, node)
  return sd


# --- schedulers --------------------------------------------------------------------------

_BETA_SCHEDULES = {'linear': 'linear', 'scaled_linear': 'scaled_linear',
                   'squaredcos_cap_v2': 'cosine'}
_PREDICTIONS = {'epsilon': 'eps', 'sample': 'x0', 'v_prediction': 'v'}
_VARIANCES = {'fixed_small': 'small', 'fixed_small_log': 'small', 'fixed_large': 'large'}


def fields_from_scheduler_config(config: dict) -> dict[str, Any]:
  """gen_jax config fields of a diffusers DDPMScheduler / DDIMScheduler config.

  Maps num_train_timesteps, beta_schedule (linear, scaled_linear, squaredcos_cap_v2),
  beta_start/end, prediction_type, clip_sample and variance_type. Keys that only choose
  how diffusers spaces its inference timesteps (timestep_spacing, steps_offset,
  set_alpha_to_one) are left to gen_jax's `sampling` block.

  Raises:
    UserError: one line naming the key whose value gen_jax cannot reproduce.
  """
  def refuse(key, why):
    return UserError(f'cannot map the diffusers scheduler config: {key}={config.get(key)!r} '
                     f'({why}).')

  schedule = config.get('beta_schedule', 'linear')
  if schedule not in _BETA_SCHEDULES:
    raise refuse('beta_schedule', f'gen_jax has {", ".join(_BETA_SCHEDULES)}')
  if config.get('trained_betas') is not None:
    raise refuse('trained_betas', 'gen_jax builds betas from beta_schedule')
  prediction = config.get('prediction_type', 'epsilon')
  if prediction not in _PREDICTIONS:
    raise refuse('prediction_type', f'gen_jax has {", ".join(_PREDICTIONS)}')
  variance = config.get('variance_type', 'fixed_small')
  if variance not in _VARIANCES:
    raise refuse('variance_type', f'gen_jax has {", ".join(_VARIANCES)}')
  if config.get('thresholding', False):
    raise refuse('thresholding', 'gen_jax clips x0 to [-1, 1] only')
  clip = bool(config.get('clip_sample', True))
  if clip and float(config.get('clip_sample_range', 1.0)) != 1.0:
    raise refuse('clip_sample_range', 'gen_jax clips x0 to [-1, 1]')
  if config.get('rescale_betas_zero_snr', False):
    raise refuse('rescale_betas_zero_snr', 'gen_jax has no zero-SNR rescaling')
  fields = {'diffusion.schedule': _BETA_SCHEDULES[schedule],
            'diffusion.num_timesteps': int(config.get('num_train_timesteps', 1000)),
            'diffusion.prediction': _PREDICTIONS[prediction],
            'sampling.clip_x0': clip, 'sampling.ddpm_variance': _VARIANCES[variance]}
  if schedule != 'squaredcos_cap_v2':
    fields['diffusion.beta_start'] = float(config.get('beta_start', 0.0001))
    fields['diffusion.beta_end'] = float(config.get('beta_end', 0.02))
  return fields


def scheduler_config_from_fields(config) -> dict:
  """The DDPMScheduler config of a gen_jax diffusion config (`diffusion`, `sampling`)."""
  d, s = config.diffusion, config.sampling
  to_diffusers = {v: k for k, v in _BETA_SCHEDULES.items()}
  if d.schedule not in to_diffusers:
    raise UserError(f'cannot export diffusion.schedule={d.schedule!r}: diffusers has no '
                    f'such beta_schedule.')
  return {'_class_name': 'DDPMScheduler', 'num_train_timesteps': int(d.num_timesteps),
          'beta_schedule': to_diffusers[d.schedule], 'beta_start': float(d.beta_start),
          'beta_end': float(d.beta_end), 'trained_betas': None,
          'prediction_type': {v: k for k, v in _PREDICTIONS.items()}[d.prediction],
          'clip_sample': bool(s.clip_x0), 'clip_sample_range': 1.0,
          'variance_type': 'fixed_small' if s.ddpm_variance == 'small' else 'fixed_large',
          'timestep_spacing': 'leading', 'steps_offset': 0}


# --- folders -----------------------------------------------------------------------------

@dataclasses.dataclass
class DiffusersFolder:
  """What a diffusers folder holds for a UNet2DModel and its scheduler.

  Attributes:
    layout: 'pipeline' (model_index.json, unet/, scheduler/) or 'model' (flat).
    unet_config: the U-Net's config.json.
    scheduler_config: the scheduler's config.
    state_dict: the U-Net's weights, name -> numpy array.
    files: path (relative to the folder) -> sha256 of every file read.
  """
  layout: str
  unet_config: dict
  scheduler_config: dict
  state_dict: dict
  files: dict


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read {path}: {e}') from None


def read_weights(path: str) -> dict[str, np.ndarray]:
  """A .safetensors (safetensors.numpy) or a torch .bin (torch-free reader) -> arrays."""
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return load_file(path)
    except Exception as e:  # safetensors raises its own error types  # pylint: disable=broad-except
      raise UserError(f'{path}: not a readable safetensors file ({e}).') from None
  return torch_files.read_state_dict(path)


def read_folder(folder: str) -> DiffusersFolder:
  """Reads a UNet2DModel and its scheduler config from either hub layout.

  Args:
    folder: a pipeline folder (model_index.json, unet/, scheduler/) or a model folder
      (config.json, diffusion_pytorch_model.{safetensors,bin}, scheduler_config.json).
  Returns:
    The folder's contents.
  Raises:
    UserError: one line, when the folder is neither or a file is missing.
  """
  if os.path.isdir(os.path.join(folder, 'unet')):
    layout, unet_dir = 'pipeline', os.path.join(folder, 'unet')
    scheduler_path = os.path.join(folder, 'scheduler', SCHEDULER_CONFIG)
  else:
    layout, unet_dir = 'model', folder
    scheduler_path = os.path.join(folder, SCHEDULER_CONFIG)
  config_path = os.path.join(unet_dir, MODEL_CONFIG)
  if not os.path.exists(config_path):
    raise UserError(f'{folder} is not a diffusers UNet2DModel folder: no {MODEL_CONFIG} '
                    f'there nor in unet/ (give a pipeline or model folder).')
  if not os.path.exists(scheduler_path):
    raise UserError(f'{folder} has no scheduler config ({os.path.relpath(scheduler_path, folder)})'
                    f'; the diffusion process cannot be mapped without it.')
  weights = [os.path.join(unet_dir, n) for n in (WEIGHTS_SAFETENSORS, WEIGHTS_BIN)
             if os.path.exists(os.path.join(unet_dir, n))]
  if not weights:
    raise UserError(f'{unet_dir} has neither {WEIGHTS_SAFETENSORS} nor {WEIGHTS_BIN}.')
  paths = [config_path, scheduler_path, weights[0]]
  return DiffusersFolder(
      layout=layout, unet_config=_read_json(config_path),
      scheduler_config=_read_json(scheduler_path), state_dict=read_weights(weights[0]),
      files={os.path.relpath(p, folder): _sha256(p) for p in paths})


def write_folder(out: str, unet_config: dict, state_dict: dict, scheduler_config: dict,
                 metadata: dict | None = None) -> list[str]:
  """Writes a model folder that both `UNet2DModel.from_pretrained(out)` and
  `DDPMPipeline.from_pretrained(out)` load: config.json, the safetensors weights,
  scheduler_config.json and a model_index.json naming the two (diffusers loads a
  pipeline's components from the folder itself when there are no subfolders).

  Returns:
    The files written.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out, exist_ok=True)
  index = {'_class_name': 'DDPMPipeline', 'unet': ['diffusers', 'UNet2DModel'],
           'scheduler': ['diffusers', scheduler_config.get('_class_name', 'DDPMScheduler')]}
  written = []
  for name, content in ((MODEL_CONFIG, unet_config), (SCHEDULER_CONFIG, scheduler_config),
                        (PIPELINE_INDEX, index)):
    path = os.path.join(out, name)
    with open(path, 'w') as f:
      json.dump(content, f, indent=2, sort_keys=True)
      f.write('\n')
    written.append(path)
  path = os.path.join(out, WEIGHTS_SAFETENSORS)
  save_file(state_dict, path, metadata={'format': 'pt', **(metadata or {})})
  return written + [path]


def hub_snapshot(repo_id: str, revision: str | None = None) -> tuple[str, str]:
  """Downloads a hub repository's config, scheduler and weights files.

  Returns:
    (local folder, the commit it is at).
  Raises:
    UserError: huggingface_hub is not installed, or the download fails.
  """
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(f'--source={repo_id} is not a folder here, and fetching it from the hub '
                    f'needs huggingface_hub: pip install "gen_jax[hub]" (or download the '
                    f'folder and give its path).') from None
  patterns = ['*.json', f'*{WEIGHTS_SAFETENSORS}', f'*{WEIGHTS_BIN}']
  try:
    folder = huggingface_hub.snapshot_download(repo_id, revision=revision,
                                               allow_patterns=patterns)
  except Exception as e:  # network, auth and not-found errors alike  # pylint: disable=broad-except
    message = ' '.join(str(e).split())[:200]
    raise UserError(f'cannot download {repo_id} from the hub ({type(e).__name__}: '
                    f'{message}); check the id and the network, or give a local folder.') from None
  return folder, os.path.basename(os.path.normpath(folder))
