"""Image grids written as PNG, so a researcher can look rather than read."""

import os

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
  """[-1, 1] floats -> [0, 255] uint8 (the same quantisation as a saved PNG)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1,
               pad_value: int = 255) -> np.ndarray:
  """Tiles images into one picture.

  Args:
    images: (N, H, W, C) floats in [-1, 1], C in (1, 3).
    ncols: images per row (default: about sqrt(N)).
    pad: pixels between tiles.
    pad_value: colour of the padding.
  Returns:
    (rows*(H+pad)+pad, ncols*(W+pad)+pad, C) uint8.
  """
  images = to_uint8(images)
  n, h, w, c = images.shape
  ncols = ncols or int(np.ceil(np.sqrt(n)))
  nrows = int(np.ceil(n / ncols))
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
  for i in range(n):
    r, col = divmod(i, ncols)
    top, left = pad + r * (h + pad), pad + col * (w + pad)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_png(path: str, picture: np.ndarray, min_size: int = 256) -> None:
  """Saves a uint8 (H, W, C) picture, upscaled by an integer factor (nearest) so that
  its shorter side is at least `min_size` pixels: 16x16 digits stay visible."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  scale = max(1, int(np.ceil(min_size / min(picture.shape[:2]))))
  picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
  if picture.shape[-1] == 1:
    picture = picture[..., 0]
  Image.fromarray(picture).save(path)


def save_grid(path: str, images: np.ndarray, ncols: int | None = None) -> None:
  """image_grid + save_png."""
  save_png(path, image_grid(images, ncols))


def gaussian_latent_grid(n: int, margin: float = 0.05) -> np.ndarray:
  """Points of a 2-d latent on an n x n grid of the inverse Gaussian CDF (Kingma &
  Welling, fig. 4): equal steps of prior probability mass rather than of z.

  Args:
    n: points per axis.
    margin: the grid covers CDF values [margin, 1 - margin] on each axis.
  Returns:
    (n * n, 2) float32, row-major as `image_grid` tiles them: z_1 grows to the right
    along a row, z_2 shrinks downwards (so up is +z_2, as on a plot).
  """
  from statistics import NormalDist  # pylint: disable=g-import-not-at-top
  values = np.array([NormalDist().inv_cdf(p) for p in np.linspace(margin, 1 - margin, n)],
                    np.float32)  # (n,) increasing
  z2, z1 = np.meshgrid(values[::-1], values, indexing='ij')  # (n, n) each
  return np.stack([z1.ravel(), z2.ravel()], axis=-1)


def save_latent_scatter(path: str, z: np.ndarray, labels: np.ndarray,
                        title: str = '') -> None:
  """Scatter plot of 2-d latent codes coloured by class label (matplotlib, Agg).

  Args:
    path: the PNG to write.
    z: (N, 2) latent codes (e.g. posterior means of held-out data).
    labels: (N,) integer labels.
    title: plot title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
  few = labels.max(initial=0) < 10  # one tab10 colour a class
  points = ax.scatter(z[:, 0], z[:, 1], c=labels, s=10, cmap='tab10' if few else 'viridis',
                      vmin=-0.5 if few else None, vmax=9.5 if few else None)
  fig.colorbar(points, ax=ax, label='label')
  ax.set_xlabel('z_1')
  ax.set_ylabel('z_2')
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def interpolate(z0: np.ndarray, z1: np.ndarray, num: int, spherical: bool = False) -> np.ndarray:
  """Points between latent codes, end points included.

  Linear: (1 - t) z0 + t z1. Spherical (slerp, Shoemake 1985; White 2016 for GANs):
  along the great circle, with the norm interpolated linearly, so that for z0 and z1 of
  equal norm every point keeps it (a linear path cuts through the low-density centre
  of a high-dimensional Gaussian).

  Args:
    z0, z1: (..., D) end points.
    num: points along each path (>= 2).
    spherical: slerp instead of a straight line.
  Returns:
    (..., num, D) float32.
  """
  z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
  t = np.linspace(0.0, 1.0, num)[:, None]  # (num, 1)
  z0, z1 = z0[..., None, :], z1[..., None, :]  # (..., 1, D)
  if not spherical:
    return ((1 - t) * z0 + t * z1).astype(np.float32)
  n0 = np.linalg.norm(z0, axis=-1, keepdims=True)
  n1 = np.linalg.norm(z1, axis=-1, keepdims=True)
  u0, u1 = z0 / np.maximum(n0, 1e-12), z1 / np.maximum(n1, 1e-12)
  omega = np.arccos(np.clip(np.sum(u0 * u1, axis=-1, keepdims=True), -1.0, 1.0))
  sin = np.sin(omega)
  safe = np.maximum(sin, 1e-8)
  direction = np.where(sin > 1e-6, (np.sin((1 - t) * omega) * u0 + np.sin(t * omega) * u1) / safe,
                       (1 - t) * u0 + t * u1)  # (..., num, D) unit (or nearly parallel ends)
  return (((1 - t) * n0 + t * n1) * direction).astype(np.float32)


def save_points_scatter(path: str, points: np.ndarray, centres: np.ndarray | None = None,
                        radius: float = 0.0, title: str = '') -> None:
  """Scatter plot of 2-d samples over the data's mode centres (matplotlib, Agg).

  Args:
    path: the PNG to write.
    points: (N, 2) samples.
    centres: (M, 2) mode centres to mark (optional).
    radius: draw a circle of this radius around each centre (0: none), e.g. the
      distance within which a sample counts as high quality.
    title: plot title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
  ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4, color='tab:blue', label='samples')
  if centres is not None:
    ax.scatter(centres[:, 0], centres[:, 1], s=30, marker='x', color='tab:red', label='modes')
    for centre in centres if radius > 0 else ():
      ax.add_patch(plt.Circle(centre, radius, fill=False, color='tab:red', lw=0.8))
  ax.set_aspect('equal')
  ax.legend(loc='upper right', fontsize=8)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
