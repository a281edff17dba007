"""Sample-quality metrics over feature arrays: FID, KID, Inception Score, precision/recall.

Pure numpy functions of (N, D) features or (N, C) class probabilities, whatever network produced
them (the FID Inception's pool3 features and softmax, or a gen_jax-trained classifier's). Sums
that cancel (covariances, the trace of a matrix square root, MMD) run in float64.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """The Gaussian summary of a feature set that FID compares.

  Attributes:
    mean: (D,) float64.
    cov: (D, D) float64, the unbiased (N - 1) covariance, as pytorch-fid and TF's FID use.
    n: number of samples.
  """
  mean: np.ndarray
  cov: np.ndarray
  n: int


def compute_stats(features: np.ndarray, chunk_size: int = 4096) -> FeatureStats:
  """Mean and covariance of (N, D) features, accumulated in float64 over row chunks.

  Chunking keeps memory at O(D^2 + chunk_size * D) instead of a float64 copy of all N rows
  (50k x 2048 would be 800 MB); centring on the exact mean first avoids the cancellation of
  E[x x^T] - mu mu^T.

  Args:
    features: (N, D), N >= 2.
    chunk_size: rows converted to float64 at a time.
  Returns:
    FeatureStats.
  """
  features = np.asarray(features)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f'expected (N >= 2, D) features, got shape {features.shape}')
  n, d = features.shape
  chunks = range(0, n, chunk_size)
  mean = sum(features[i:i + chunk_size].sum(0, dtype=np.float64) for i in chunks) / n  # (D,)
  cov = np.zeros((d, d), np.float64)
  for i in chunks:
    centred = features[i:i + chunk_size].astype(np.float64) - mean  # (chunk, D)
    cov += centred.T @ centred
  return FeatureStats(mean=mean, cov=cov / (n - 1), n=n)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix; round-off negative eigenvalues -> 0."""
  eigvals, eigvecs = np.linalg.eigh(matrix)
  return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(stats_a: FeatureStats, stats_b: FeatureStats) -> float:
  """FID: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017).

  S_a S_b is not symmetric, and scipy's sqrtm on it can return complex round-off or fail for
  singular covariances (N < D). Instead: S_a S_b is similar to the symmetric PSD
  M = S_a^(1/2) S_b S_a^(1/2) (AB and BA share eigenvalues), so tr (S_a S_b)^(1/2) =
  sum_i sqrt(eig_i(M)), with eigh throughout and tiny negative eigenvalues clipped to 0.

  Args:
    stats_a, stats_b: FeatureStats of the same dimension.
  Returns:
    The Frechet distance (float64 arithmetic).
  """
  if stats_a.mean.shape != stats_b.mean.shape:
    raise ValueError(f'feature dimensions differ: {stats_a.mean.shape} vs {stats_b.mean.shape}')
  cov_a = np.asarray(stats_a.cov, np.float64)
  cov_b = np.asarray(stats_b.cov, np.float64)
  sqrt_a = _psd_sqrt((cov_a + cov_a.T) / 2)
  m = sqrt_a @ cov_b @ sqrt_a
  tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)))
  diff = np.asarray(stats_a.mean, np.float64) - np.asarray(stats_b.mean, np.float64)
  return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (x.y / d + 1)^3, KID's kernel: (n, D), (m, D) -> (n, m)."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 of two equal-size samples: within-set sums skip i = j (Gretton et al.)."""
  m = x.shape[0]
  k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(feats_a: np.ndarray, feats_b: np.ndarray, num_subsets: int = 100,
                              subset_size: int = 1000,
                              rng: np.random.Generator | int = 0) -> tuple[float, float]:
  """KID (Binkowski et al. 2018): unbiased MMD^2, cubic polynomial kernel, over random subsets.

  Each subset draws `subset_size` rows of each set without replacement. The standard error
  measures only the spread over subsets (which overlap), not the variation from drawing new
  samples of the two distributions.

  Args:
    feats_a: (N_a, D) features.
    feats_b: (N_b, D) features.
    num_subsets: subsets averaged over (>= 2 for a standard error).
    subset_size: rows per subset and set, capped at min(N_a, N_b).
    rng: a numpy Generator or a seed; the result is a function of it.
  Returns:
    (mean, standard error): mean over subsets, and their sample std / sqrt(num_subsets).
  """
  feats_a = np.asarray(feats_a, np.float64)
  feats_b = np.asarray(feats_b, np.float64)
  if feats_a.ndim != 2 or feats_a.shape[1:] != feats_b.shape[1:]:
    raise ValueError(f'expected (N, D) features of one D, got {feats_a.shape}, {feats_b.shape}')
  m = min(subset_size, feats_a.shape[0], feats_b.shape[0])
  if m < 2:
    raise ValueError(f'KID needs subsets of at least 2 samples, got {m}')
  rng = np.random.default_rng(rng)
  mmds = np.array([
      _unbiased_mmd2(feats_a[rng.choice(feats_a.shape[0], m, replace=False)],
                     feats_b[rng.choice(feats_b.shape[0], m, replace=False)])
      for _ in range(num_subsets)])
  std_err = mmds.std(ddof=1) / np.sqrt(num_subsets) if num_subsets > 1 else float('nan')
  return float(mmds.mean()), float(std_err)


def inception_score(probs: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
  """IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), p(y) the mean over each split.

  The standard protocol (the authors' code): split the N predictions into `num_splits`
  contiguous parts, score each against its own marginal, report mean and (population) std.

  Args:
    probs: (N, C) class probabilities (rows sum to 1), e.g. a softmax of the 1008 logits.
    num_splits: contiguous splits.
  Returns:
    (mean, std) over the splits.
  """
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[0] < num_splits:
    raise ValueError(f'expected (N >= {num_splits}, C) probabilities, got shape {probs.shape}')
  if np.any(probs < 0) or not np.allclose(probs.sum(1), 1.0, atol=1e-3):
    raise ValueError('inception_score takes probabilities (rows >= 0 summing to 1), '
                     'not logits: apply a softmax first')
  n = probs.shape[0]
  scores = []
  for i in range(num_splits):
    part = probs[i * n // num_splits:(i + 1) * n // num_splits]  # (n_i, C)
    marginal = part.mean(0, keepdims=True)  # (1, C)
    with np.errstate(divide='ignore', invalid='ignore'):  # 0 log 0 = 0
      kl = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0).sum(1)  # (n_i,)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def _sq_norms(x: np.ndarray) -> np.ndarray:
  return np.einsum('nd,nd->n', x, x)


def _sq_distances(a: np.ndarray, b: np.ndarray, sq_a: np.ndarray, sq_b: np.ndarray):
  """Squared Euclidean distances (n, m) by |a|^2 + |b|^2 - 2 a.b, clipped at 0 (round-off)."""
  return np.maximum(sq_a[:, None] + sq_b[None, :] - 2.0 * (a @ b.T), 0.0)


def _kth_neighbour_sq_radii(x: np.ndarray, k: int, block_size: int) -> np.ndarray:
  """(N,) squared distance of each row to its k-th nearest other row, in row blocks."""
  sq = _sq_norms(x)
  radii = np.empty(x.shape[0], np.float32)
  for i in range(0, x.shape[0], block_size):
    d2 = _sq_distances(x[i:i + block_size], x, sq[i:i + block_size], sq)  # (block, N)
    rows = np.arange(d2.shape[0])
    d2[rows, i + rows] = 0.0  # the point itself: exactly 0, so it is the 0-th neighbour
    radii[i:i + block_size] = np.partition(d2, k, axis=1)[:, k]
  return radii


def precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3,
                     block_size: int = 1024) -> tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

  Each set's manifold is the union of balls around its points with radius the distance to the
  point's k-th nearest neighbour in the same set (itself excluded). Precision: the fraction of
  fake samples inside the real manifold; recall: the fraction of real samples inside the fake
  one. Distances are float32 matmuls over row blocks, so memory is O(block_size * N) (10k x 10k
  x 2048 features fit easily); the real-fake distances are computed once for both.

  Args:
    real_feats: (N_r, D) features of real images.
    fake_feats: (N_f, D) features of generated images.
    k: neighbourhood size (3 in the paper).
    block_size: rows per distance block.
  Returns:
    (precision, recall).
  """
  real = np.asarray(real_feats, np.float32)
  fake = np.asarray(fake_feats, np.float32)
  if real.ndim != 2 or real.shape[1:] != fake.shape[1:]:
    raise ValueError(f'expected (N, D) features of one D, got {real.shape}, {fake.shape}')
  if not 0 < k < min(real.shape[0], fake.shape[0]):
    raise ValueError(f'k = {k} needs more than k samples in each set, got {real.shape[0]} real '
                     f'and {fake.shape[0]} fake')
  real_radii = _kth_neighbour_sq_radii(real, k, block_size)  # (N_r,)
  fake_radii = _kth_neighbour_sq_radii(fake, k, block_size)  # (N_f,)
  sq_real, sq_fake = _sq_norms(real), _sq_norms(fake)
  fake_in_real = np.zeros(fake.shape[0], bool)
  real_in_fake = np.zeros(real.shape[0], bool)
  for i in range(0, fake.shape[0], block_size):
    d2 = _sq_distances(fake[i:i + block_size], real, sq_fake[i:i + block_size], sq_real)
    fake_in_real[i:i + block_size] = (d2 <= real_radii[None, :]).any(axis=1)
    real_in_fake |= (d2 <= fake_radii[i:i + block_size, None]).any(axis=0)
  return float(fake_in_real.mean()), float(real_in_fake.mean())
