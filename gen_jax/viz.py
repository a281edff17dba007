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
