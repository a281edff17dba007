"""k-means over a data set's images: pseudo-classes for an unconditional GAN.

A self-conditioned GAN (Liu et al. 2020, "Diverse Image Generation via Self-Conditioned
GANs") conditions G and D on cluster indices of the training images instead of labels:
G then need not draw between the modes, and sampling a cluster in proportion to its size
keeps the model unconditional (no label is ever read).
"""

import numpy as np


def kmeans(points: np.ndarray, k: int, seed: int, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
  """Lloyd's k-means from a k-means++ start (Arthur & Vassilvitskii 2007).

  Args:
    points: (N, D) float data, N >= k.
    k: the number of clusters.
    seed: seeds the k-means++ draws (the only randomness).
    iters: Lloyd iterations at most (stops early when the assignment is stable).
  Returns:
    (centres (k, D) float64, assignment (N,) int32 of each point's nearest centre).
  """
  points = np.asarray(points, np.float64)
  rng = np.random.default_rng(seed)
  centres = [points[rng.integers(len(points))]]
  dist = np.sum(np.square(points - centres[0]), axis=1)  # (N,) squared distance to the nearest
  for _ in range(1, k):  # k-means++: the next centre with probability ~ squared distance
    centres.append(points[rng.choice(len(points), p=dist / dist.sum())])
    dist = np.minimum(dist, np.sum(np.square(points - centres[-1]), axis=1))
  centres = np.stack(centres)  # (k, D)
  assignment = np.full(len(points), -1)
  for _ in range(iters):
    sq = (np.sum(np.square(points), 1)[:, None] - 2 * points @ centres.T
          + np.sum(np.square(centres), 1)[None])  # (N, k)
    new = np.argmin(sq, axis=1)
    if np.array_equal(new, assignment):
      break
    assignment = new
    for c in range(k):  # an emptied cluster keeps its centre
      members = points[assignment == c]
      if len(members):
        centres[c] = members.mean(axis=0)
  return centres, assignment.astype(np.int32)
