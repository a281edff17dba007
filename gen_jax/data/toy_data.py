"""The 2-d ring of 8 Gaussians, the standard mode-collapse benchmark, and its metrics.

Data (Metz et al. 2017, "Unrolled GANs"): 8 isotropic Gaussians with std RING_STD = 0.02
whose means lie evenly on a circle of radius RING_RADIUS = 2. A sample's "label" is its
mode. The metrics follow Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018 (PacGAN):
a generated point is *high quality* when it lies within 3 std of the nearest mode, and
a mode is *covered* when enough high-quality points fall on it.
"""

import numpy as np

from gen_jax.data.arrays import ArrayDataset
from gen_jax.platform.errors import UserError

RING_MODES = 8
RING_RADIUS = 2.0
RING_STD = 0.02
RING_SIZES = {'train': 20000, 'test': 2000}  # points per split


def ring_modes(num_modes: int = RING_MODES, radius: float = RING_RADIUS) -> np.ndarray:
  """(num_modes, 2) the mode centres, counter-clockwise from (radius, 0)."""
  angles = 2 * np.pi * np.arange(num_modes) / num_modes
  return (radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)).astype(np.float32)


def load_ring8(split: str, image_size: int = 0, data_dir: str = '') -> ArrayDataset:
  """The ring8 split as (N, 2) points with their mode as label (a fixed seed per split).

  Args:
    split: 'train' or 'test'.
    image_size, data_dir: unused (the `EMBEDDED_DATASETS` signature).
  Returns:
    ArrayDataset with images (N, 2) float32 points, labels (N,) the mode, 8 classes.
  """
  del image_size, data_dir
  if split not in RING_SIZES:
    raise UserError(f"ring8 has splits {sorted(RING_SIZES)}, not {split!r}.")
  n = RING_SIZES[split]
  rng = np.random.default_rng(list(RING_SIZES).index(split))
  labels = rng.integers(0, RING_MODES, n).astype(np.int32)
  points = ring_modes()[labels] + RING_STD * rng.standard_normal((n, 2)).astype(np.float32)
  return ArrayDataset(images=points.astype(np.float32), labels=labels, num_classes=RING_MODES)


def ring_metrics(points: np.ndarray, min_fraction: float = 0.01,
                 num_std: float = 3.0) -> dict[str, float]:
  """Mode coverage and sample quality of generated points.

  Args:
    points: (N, 2) generated samples.
    min_fraction: a mode is covered when at least this fraction of all N points are
      high-quality points on it (0.01 of 2500 = 25 points, close to PacGAN's 20).
    num_std: a point is high quality within num_std * RING_STD of its nearest mode.
  Returns:
    {'modes_covered': how many of the 8 modes are covered,
     'high_quality_fraction': fraction of points within num_std std of a mode,
     'largest_mode_fraction': the share of high-quality points on the most popular mode
       (1/8 when balanced, 1 when collapsed to one mode)}.
  """
  points = np.asarray(points, np.float64).reshape(-1, 2)
  distances = np.linalg.norm(points[:, None, :] - ring_modes()[None], axis=-1)  # (N, 8)
  nearest = np.argmin(distances, axis=-1)  # (N,)
  good = np.min(distances, axis=-1) <= num_std * RING_STD  # (N,)
  counts = np.bincount(nearest[good], minlength=RING_MODES)  # (8,)
  return {'modes_covered': float(np.sum(counts >= max(min_fraction * len(points), 1))),
          'high_quality_fraction': float(np.mean(good)),
          'largest_mode_fraction': float(counts.max() / max(counts.sum(), 1))}
