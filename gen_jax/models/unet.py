"""The U-Net of Ho et al. 2020 (DDPM), sized by base channels and per-level multipliers."""

from typing import Any, Sequence

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.models import layers


class UNet(nn.Module):
  """eps/x0/v-prediction network f(x_t, t [, y]).

  Attributes:
    ch: base channels; level i has ch * ch_mult[i].
    ch_mult: channel multipliers, one per resolution level.
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attn_resolutions: spatial sizes (in pixels) at which self-attention follows each block.
    dropout: dropout rate inside residual blocks.
    num_groups: GroupNorm groups.
    out_channels: output channels (0: same as the input).
    resample_with_conv: learnable up/down-sampling.
    num_classes: > 0 adds a class embedding to the time embedding; label `num_classes`
      is the "null" class (classifier-free guidance).
    dtype: computation dtype (jnp.bfloat16 for mixed precision). Parameters, GroupNorm
      statistics, the softmax and the output stay float32.
    norm_eps: GroupNorm epsilon.
    flip_sin_to_cos, freq_shift: the timestep embedding (`layers.timestep_embedding`).
    downsample_padding: 0 pads bottom/right before the stride-2 conv, 1 every side.
    attn_head_dim: channels per attention head (0: one head of all channels).
    The last five default to the DDPM U-Net; diffusers' UNet2DModel defaults are 1e-5,
    True, 0, 1 and 8 (gen_jax/interop/diffusers_unet.py maps them).
  """
  ch: int = 128
  ch_mult: Sequence[int] = (1, 2, 2, 2)
  num_res_blocks: int = 2
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.1
  num_groups: int = 32
  out_channels: int = 0
  resample_with_conv: bool = True
  num_classes: int = 0
  dtype: Any = jnp.float32
  norm_eps: float = 1e-6
  flip_sin_to_cos: bool = False
  freq_shift: float = 1.0
  downsample_padding: int = 0
  attn_head_dim: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, y: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """x: (B, H, W, C) in about [-1, 1]; t: (B,) int; y: (B,) int or None. -> (B, H, W, C')."""
    temb_dim = 4 * self.ch
    temb = layers.timestep_embedding(t, self.ch, flip_sin_to_cos=self.flip_sin_to_cos,
                                     freq_shift=self.freq_shift)  # (B, ch)
    dense = functools.partial(nn.Dense, temb_dim, kernel_init=layers.default_init,
                              dtype=self.dtype)
    temb = dense(name='temb_dense0')(temb)
    temb = dense(name='temb_dense1')(nn.silu(temb))  # (B, 4ch)
    if self.num_classes > 0:
      if y is None:
        y = jnp.full(t.shape, self.num_classes, jnp.int32)  # unconditional = null class
      temb = temb + nn.Embed(self.num_classes + 1, temb_dim, dtype=self.dtype,
                             name='class_embed')(y)

    def res_block(h, out_ch):
      return layers.ResBlock(out_ch, self.num_groups, self.dropout, self.dtype,
                             self.norm_eps)(h, temb, train)

    def attend(h):
      return layers.AttnBlock(self.num_groups, self.dtype, self.norm_eps, self.attn_head_dim)(h)

    def maybe_attend(h):
      if h.shape[1] not in self.attn_resolutions:
        return h
      return attend(h)

    h = nn.Conv(self.ch, (3, 3), kernel_init=layers.default_init, dtype=self.dtype,
                name='conv_in')(x)
    skips = [h]
    for level, mult in enumerate(self.ch_mult):  # down
      for _ in range(self.num_res_blocks):
        h = maybe_attend(res_block(h, self.ch * mult))
        skips.append(h)
      if level != len(self.ch_mult) - 1:
        h = layers.Downsample(self.resample_with_conv, self.dtype, self.downsample_padding)(h)
        skips.append(h)

    h = res_block(h, h.shape[-1])  # middle
    h = attend(h)
    h = res_block(h, h.shape[-1])

    for level, mult in reversed(list(enumerate(self.ch_mult))):  # up
      for _ in range(self.num_res_blocks + 1):
        h = maybe_attend(res_block(jnp.concatenate([h, skips.pop()], axis=-1), self.ch * mult))
      if level != 0:
        h = layers.Upsample(self.resample_with_conv, self.dtype)(h)

    h = layers.GroupNorm(self.num_groups, epsilon=self.norm_eps, silu=True, dtype=self.dtype,
                         name='norm_out')(h)
    out = nn.Conv(self.out_channels or x.shape[-1], (3, 3), kernel_init=layers.zero_init,
                  dtype=self.dtype, name='conv_out')(h)
    return out.astype(jnp.float32)  # losses and samplers work in float32
