"""A small convolutional image classifier: the offline feature extractor of evaluation.

Trained by gen_jax itself on the dataset (`configs/classifier_digits.py`), its
penultimate activations are the features of a Frechet distance that works without
downloaded weights, and its predictions measure class coverage of generated samples.
`model.apply(params, x)` gives logits; `model.apply(params, x, method=Classifier.penultimate)`
the penultimate features.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class Classifier(nn.Module):
  """Conv blocks (each: two 3x3 convs, GroupNorm + SiLU, then a 2x2 downsample), global
  average pooling, one dense feature layer, then the class logits.

  Attributes:
    num_classes: K.
    features: channels per level; each level after the first halves H and W.
    feature_dim: width of the penultimate (feature) layer.
    num_groups: GroupNorm groups (must divide every level's channels).
    dropout: dropout before the logits (training only).
  """
  num_classes: int
  features: Sequence[int] = (32, 64, 128)
  feature_dim: int = 128
  num_groups: int = 8
  dropout: float = 0.0

  def setup(self):
    self.convs = [(nn.Conv(f, (3, 3), name=f'conv{i}a'), nn.Conv(f, (3, 3), name=f'conv{i}b'))
                  for i, f in enumerate(self.features)]
    self.norms = [(nn.GroupNorm(self.num_groups, name=f'norm{i}a'),
                   nn.GroupNorm(self.num_groups, name=f'norm{i}b'))
                  for i in range(len(self.features))]
    self.feature_layer = nn.Dense(self.feature_dim, name='feature')
    self.logits_layer = nn.Dense(self.num_classes, name='logits')
    self.drop = nn.Dropout(self.dropout)

  def penultimate(self, x: jax.Array) -> jax.Array:
    """x: (B, H, W, C) in [-1, 1] -> penultimate features (B, feature_dim)."""
    h = x
    for i, ((conv_a, conv_b), (norm_a, norm_b)) in enumerate(zip(self.convs, self.norms)):
      if i:  # halve H and W between levels
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
      h = nn.silu(norm_a(conv_a(h)))
      h = nn.silu(norm_b(conv_b(h)))
    h = jnp.mean(h, axis=(1, 2))  # (B, C): global average pool
    return nn.silu(self.feature_layer(h))

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (B, H, W, C) in [-1, 1] -> logits (B, num_classes)."""
    h = self.drop(self.penultimate(x), deterministic=not train)
    return self.logits_layer(h)
