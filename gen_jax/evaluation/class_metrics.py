"""Metrics of a classifier's predictions on generated samples: mode coverage over the
classes, and for class-conditional models whether samples show the class they were
asked for. Pure numpy functions."""

import numpy as np


def class_coverage(predicted: np.ndarray, num_classes: int) -> dict[str, float]:
  """How evenly generated samples spread over the classes (a mode-collapse measure).

  Args:
    predicted: (N,) predicted class of each sample.
    num_classes: K.
  Returns:
    {'classes_covered': classes with at least half their fair share (N / 2K) of
     the samples, 'class_entropy': entropy of the predicted-class histogram over log K
     (1 = uniform, 0 = one class), 'largest_class_fraction': the most frequent class's
     share}.
  """
  counts = np.bincount(np.asarray(predicted, np.int64), minlength=num_classes)
  counts = counts[:num_classes].astype(np.float64)
  n = counts.sum()
  if n == 0:
    raise ValueError('class_coverage needs at least one prediction.')
  p = counts / n
  nonzero = p[p > 0]
  entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(num_classes))
  return {'classes_covered': float(np.sum(counts >= n / (2 * num_classes))),
          'class_entropy': entropy, 'largest_class_fraction': float(p.max())}


def conditional_accuracy(predicted: np.ndarray, requested: np.ndarray) -> float:
  """The fraction of samples whose predicted class is the class they were generated for."""
  predicted, requested = np.asarray(predicted), np.asarray(requested)
  if predicted.shape != requested.shape:
    raise ValueError(f'predicted {predicted.shape} and requested {requested.shape} differ.')
  return float(np.mean(predicted == requested))
