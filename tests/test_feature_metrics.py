"""FID, KID, IS and precision/recall against closed forms and independent computations."""

import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats

from gen_jax.evaluation import feature_metrics as fm


def _random_cov(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_compute_stats_matches_numpy_over_chunks():
  x = np.random.default_rng(0).normal(3.0, 2.0, size=(103, 7)).astype(np.float32)
  stats = fm.compute_stats(x, chunk_size=10)  # 11 chunks, the last one short
  np.testing.assert_allclose(stats.mean, x.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)
  assert stats.n == 103 and stats.mean.dtype == np.float64


def test_fid_of_a_set_with_itself_is_zero():
  x = np.random.default_rng(1).normal(size=(500, 64))
  stats = fm.compute_stats(x)
  assert abs(fm.frechet_distance(stats, stats)) < 1e-8
  # Rank-deficient covariances (N < D, as 2048-d features of a few hundred samples): sqrtm of
  # the product is ill-conditioned there; the eigh route must still give ~0.
  few = fm.compute_stats(x[:20])
  assert abs(fm.frechet_distance(few, few)) < 1e-6 * np.trace(few.cov)


def test_fid_matches_scipy_sqrtm():
  rng = np.random.default_rng(2)
  d = 32
  a = fm.FeatureStats(rng.normal(size=d), _random_cov(rng, d), 1000)
  b = fm.FeatureStats(rng.normal(size=d) + 0.5, 2.0 * _random_cov(rng, d), 1000)
  covmean = scipy.linalg.sqrtm(a.cov @ b.cov).real
  expected = (np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov)
              - 2 * np.trace(covmean))
  assert fm.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
  assert fm.frechet_distance(b, a) == pytest.approx(expected, rel=1e-9)  # symmetric


def test_fid_closed_form_for_diagonal_gaussians():
  mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
  var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  a = fm.FeatureStats(mu_a, np.diag(var_a), 10)
  b = fm.FeatureStats(mu_b, np.diag(var_b), 10)
  # |mu|^2 + sum (sqrt(va) - sqrt(vb))^2 = (1 + 0 + 9) + (4 + 1 + 0)
  assert fm.frechet_distance(a, b) == pytest.approx(15.0, rel=1e-12)


def _mmd2_by_loops(x, y):
  """The unbiased MMD^2 estimator written out term by term."""
  def k(u, v):
    return (sum(ui * vi for ui, vi in zip(u, v)) / len(u) + 1.0) ** 3
  m = len(x)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return (xx + yy) / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_a_direct_loop_on_a_tiny_set():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(6, 3)), rng.normal(0.5, 1.5, size=(6, 3))
  # subset_size is capped at 6 = the whole set; every subset is then a permutation of it.
  mean, std_err = fm.kernel_inception_distance(x, y, num_subsets=3, subset_size=1000, rng=0)
  assert mean == pytest.approx(_mmd2_by_loops(x.tolist(), y.tolist()), rel=1e-10)
  assert std_err == pytest.approx(0.0, abs=1e-12)


def test_kid_is_unbiased_and_detects_a_shift():
  rng = np.random.default_rng(4)
  a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
  mean, std_err = fm.kernel_inception_distance(a, b, num_subsets=50, subset_size=100, rng=5)
  assert std_err > 0 and abs(mean) < 3 * std_err  # can be negative: the estimator is unbiased
  shifted_mean, shifted_err = fm.kernel_inception_distance(a, b + 0.5, num_subsets=50,
                                                           subset_size=100, rng=5)
  assert shifted_mean > 20 * shifted_err and shifted_mean > 10 * abs(mean)


def test_kid_is_deterministic_given_the_seed():
  rng = np.random.default_rng(6)
  a, b = rng.normal(size=(300, 8)), rng.normal(size=(200, 8))
  kw = dict(num_subsets=5, subset_size=50)
  first = fm.kernel_inception_distance(a, b, rng=7, **kw)
  assert fm.kernel_inception_distance(a, b, rng=np.random.default_rng(7), **kw) == first
  assert fm.kernel_inception_distance(a, b, rng=8, **kw) != first


def test_inception_score_extremes():
  probs = np.tile([0.2, 0.5, 0.3], (40, 1))  # the same prediction for every image
  assert fm.inception_score(probs, num_splits=4) == pytest.approx((1.0, 0.0), abs=1e-12)
  # Confident one-hot predictions, each split holding every class once: IS = C.
  one_hot = np.eye(10)[np.arange(100) % 10]
  assert fm.inception_score(one_hot, num_splits=10) == pytest.approx((10.0, 0.0), abs=1e-9)


def test_inception_score_matches_scipy_entropy():
  probs = np.random.default_rng(9).dirichlet(np.full(5, 0.3), size=60)
  scores = [np.exp(np.mean([scipy.stats.entropy(p, part.mean(0)) for p in part]))
            for part in np.split(probs, 3)]
  assert fm.inception_score(probs, num_splits=3) == pytest.approx(
      (np.mean(scores), np.std(scores)), rel=1e-10)


def test_inception_score_closed_form_from_logits():
  """Two images, two classes, softmax of logits (log 3, 0) and (0, log 3): p = (3/4, 1/4)
  and (1/4, 3/4), marginal (1/2, 1/2), KL = 3/4 log(3/2) + 1/4 log(1/2) for both, so
  IS = exp(3/4 log 3 - log 2) = 3^(3/4) / 2 = 1.1397535..."""
  logits = np.array([[np.log(3.0), 0.0], [0.0, np.log(3.0)]])
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  assert fm.inception_score(probs, num_splits=1) == pytest.approx((3 ** 0.75 / 2, 0.0),
                                                                  rel=1e-12)
  # With a bias b = (log 3, 0) on both (the biased logits): p = (9/10, 1/10), (1/2, 1/2),
  # marginal (7/10, 3/10): another number, which is why the bias must stay out.
  biased = logits + np.array([np.log(3.0), 0.0])
  probs_b = np.exp(biased) / np.exp(biased).sum(1, keepdims=True)
  kl = lambda p, m: sum(pi * np.log(pi / mi) for pi, mi in zip(p, m))
  want = np.exp((kl([0.9, 0.1], [0.7, 0.3]) + kl([0.5, 0.5], [0.7, 0.3])) / 2)
  assert fm.inception_score(probs_b, num_splits=1)[0] == pytest.approx(want, rel=1e-12)
  assert abs(want - 3 ** 0.75 / 2) > 0.03


def test_inception_score_refuses_logits():
  with pytest.raises(ValueError, match='softmax'):
    fm.inception_score(np.random.default_rng(0).normal(size=(20, 5)), num_splits=2)


def _precision_recall_brute_force(real, fake, k):
  """float64 cdist, the k-th neighbour by sorting (column 0 is the point itself)."""
  real_r = np.sort(scipy.spatial.distance.cdist(real, real), axis=1)[:, k]
  fake_r = np.sort(scipy.spatial.distance.cdist(fake, fake), axis=1)[:, k]
  d = scipy.spatial.distance.cdist(fake, real)  # (N_f, N_r)
  n_real, n_fake = len(real), len(fake)
  precision = np.mean([any(d[i, j] <= real_r[j] for j in range(n_real)) for i in range(n_fake)])
  recall = np.mean([any(d[i, j] <= fake_r[i] for i in range(n_fake)) for j in range(n_real)])
  return precision, recall


def test_precision_recall_matches_brute_force_across_blocks():
  rng = np.random.default_rng(10)
  real = rng.normal(size=(57, 5))
  fake = rng.normal(0.7, 1.3, size=(43, 5))
  got = fm.precision_recall(real, fake, k=3, block_size=16)  # several blocks, a short last one
  want = _precision_recall_brute_force(real, fake, 3)
  assert 0.1 < want[0] < 0.95 and 0.1 < want[1] < 0.95  # an informative case, not 0 or 1
  assert got == pytest.approx(want, abs=1e-12)


def test_precision_recall_on_hand_made_sets():
  rng = np.random.default_rng(11)
  centres = 20.0 * np.array([[0, 0], [1, 0], [0, 1], [1, 1]])  # four modes, far apart
  real = np.concatenate([c + rng.normal(size=(200, 2)) for c in centres])  # (800, 2)
  assert fm.precision_recall(real, real, k=3) == (1.0, 1.0)
  assert fm.precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)
  # Copies of the first two modes: all fakes are real-looking, half the real modes are missed.
  assert fm.precision_recall(real, real[:400], k=3) == (1.0, 0.5)
  # Fresh samples of the first two modes: the same, up to points at the edge of a mode.
  fake = np.concatenate([c + rng.normal(size=(200, 2)) for c in centres[:2]])
  precision, recall = fm.precision_recall(real, fake, k=3)
  assert precision > 0.95 and 0.45 < recall <= 0.5
