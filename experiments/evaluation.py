"""The evaluation program: `--mode=eval`, and sample metrics during training.

`--mode=eval` takes the latest checkpoint of any family, generates `eval.num_samples`
samples (EMA parameters unless `eval.use_ema=False`; the config's sampler and steps;
in batches of `eval.batch_size` split over all devices and hosts, with progress), and
scores them against the features of `eval.split` of the real data:

  * fid, kid (unbiased, with kid_stderr), precision / recall (k-NN manifolds), and
    inception_score, all from one pass of the feature extractor;
  * with the classifier extractor: classes_covered, class_entropy,
    largest_class_fraction (mode collapse), and for class-conditional models
    class_accuracy (does a sample show the class it was asked for);
  * the family's own metrics (`experiment.evaluate`): the VAE's held-out ELBO and IWAE
    bound, the DDPM variational bound in bits/dim, ring8 mode coverage;
  * the floor: the same sample metrics for the held-out real split (`data.eval_split`)
    against the reference, so a reader sees how far a model is from real data.

It writes WORKDIR/eval/<step>.json (a manifest of what exactly was measured) and logs
`eval/...` to metrics.jsonl and TensorBoard. An earlier manifest of the same step measured
under other settings (sampler, truncation, parameters, seed, sample count, extractor,
reference) is kept as WORKDIR/eval/<step>.<k>.json, so the ledger lists both; one with the
same settings is replaced (a re-measurement).

With `eval.samples_file=FILE.npz`, `--mode=eval` scores that file's samples instead of
generating any (another codebase's, or one of our own sample files): the same metrics,
extractor, reference and floor, in WORKDIR/eval/external_<file name>.json, marked
external (the file's path, sha256, n and shape). No checkpoint is read and nothing is
logged to metrics.jsonl (the file has no training step).
"""

import datetime
import hashlib
import json
import os
import time

import jax
import numpy as np

import experiments
from gen_jax.core import parallel
from gen_jax.core import rng_streams
from gen_jax.core.trainer import format_duration
from gen_jax.data import arrays
from gen_jax.evaluation import class_metrics
from gen_jax.evaluation import feature_extractors
from gen_jax.evaluation import feature_metrics
from gen_jax.evaluation import reference_sets
from gen_jax.evaluation.reference_sets import FeatureSet
from gen_jax.platform import metric_log
from gen_jax.platform.errors import UserError

CLASSIFIER_TRAIN_HINT = ('python launch.py --config=configs/classifier_digits.py '
                         '--workdir=runs/classifier_digits (or classifier_mnist.py)')


def classifier_extractor(workdir: str, mesh, data_config,
                         chunk: int = 500) -> feature_extractors.ClassifierExtractor:
  """The feature extractor of the classifier run in `workdir` (`eval.classifier_workdir`).

  Raises:
    UserError: no classifier run there, no checkpoint, or one trained on another dataset
      or image size than `data_config`'s.
  """
  config, classifier, state = experiments.load_run(
      workdir, mesh, 'classifier', 'eval.classifier_workdir', CLASSIFIER_TRAIN_HINT)
  if config.data.dataset != data_config.dataset:
    raise UserError(f'eval.classifier_workdir={workdir!r} classifies '
                    f'{config.data.dataset!r}, but this run is on {data_config.dataset!r}; '
                    f'train a classifier on it ({CLASSIFIER_TRAIN_HINT}).')
  if config.data.image_size != data_config.image_size:
    raise UserError(f'eval.classifier_workdir={workdir!r} takes {config.data.image_size}px '
                    f'images, this run makes {data_config.image_size}px ones; train the '
                    f'classifier with --config.data.image_size={data_config.image_size}.')
  return feature_extractors.ClassifierExtractor(
      classifier.features_and_probs, state.ema_params, classifier.num_classes, workdir,
      int(jax.device_get(state.step)), mesh, chunk)


def build_extractor(eval_config, data_config, mesh) -> feature_extractors.FeatureExtractor:
  """The extractor that `eval.feature_extractor` names."""
  kind = eval_config.feature_extractor
  if kind == 'classifier':
    return classifier_extractor(eval_config.classifier_workdir, mesh, data_config)
  if kind == 'inception':
    return feature_extractors.InceptionExtractor(eval_config.inception_weights, mesh)
  raise UserError(f'eval.feature_extractor must be one of {feature_extractors.EXTRACTORS}, '
                  f'not {kind!r}.')


def validate(config, mesh, num_samples: int) -> None:
  """One-line errors for the `eval` block, before anything is generated."""
  e = config.eval
  if num_samples < 1:
    raise UserError(f'eval.num_samples must be >= 1, not {num_samples}.')
  if e.batch_size < 1:
    raise UserError(f'eval.batch_size must be >= 1, not {e.batch_size}.')
  batch = min(e.batch_size, num_samples)
  if num_samples % batch:
    raise UserError(f'eval.num_samples={num_samples} is not a multiple of '
                    f'eval.batch_size={batch}; make it one (every generation call has '
                    f'the same shape, so it compiles once).')
  parallel.check_divisible(batch, 'eval.batch_size', mesh)
  if e.feature_extractor not in feature_extractors.EXTRACTORS:
    raise UserError(f'eval.feature_extractor must be one of {feature_extractors.EXTRACTORS}, '
                    f'not {e.feature_extractor!r}.')
  if e.image_size < 0:
    raise UserError(f'eval.image_size must be >= 0 (0: data.image_size), not {e.image_size}.')
  for name in ('kid_subsets', 'kid_subset_size', 'pr_neighbours', 'is_splits'):
    if e[name] < 1:
      raise UserError(f'eval.{name} must be >= 1, not {e[name]}.')


def sample_metrics(generated: FeatureSet, reference: FeatureSet, eval_config,
                   num_classes: int) -> dict[str, float]:
  """Every sample metric of `generated` against `reference` (unprefixed names)."""
  e = eval_config
  rng = np.random.default_rng([e.seed, rng_streams.EVALUATION])
  fid = feature_metrics.frechet_distance(feature_metrics.compute_stats(generated.features),
                                         feature_metrics.compute_stats(reference.features))
  kid, kid_stderr = feature_metrics.kernel_inception_distance(
      generated.features, reference.features, num_subsets=e.kid_subsets,
      subset_size=e.kid_subset_size, rng=rng)
  precision, recall = feature_metrics.precision_recall(reference.features, generated.features,
                                                       k=e.pr_neighbours)
  inception_score, inception_score_std = feature_metrics.inception_score(
      generated.probs, num_splits=min(e.is_splits, len(generated)))
  metrics = {'fid': fid, 'kid': kid, 'kid_stderr': kid_stderr, 'precision': precision,
             'recall': recall, 'inception_score': inception_score,
             'inception_score_std': inception_score_std}
  if num_classes:
    predicted = np.argmax(generated.probs, axis=-1)
    metrics.update(class_metrics.class_coverage(predicted, num_classes))
    if generated.labels is not None:
      metrics['class_accuracy'] = class_metrics.conditional_accuracy(predicted,
                                                                     generated.labels)
  return {k: float(v) for k, v in metrics.items()}


_SAMPLE_KEYS = ('samples', 'images')  # digits_anchor.py writes 'samples'; gen_jax 'images'


def load_samples(path: str, image_size: int, channels: int | None,
                 min_samples: int) -> tuple[np.ndarray, dict]:
  """The images of a sample file, as the evaluation's extractor takes them.

  Accepted: an .npz with an array under 'samples' or 'images' (the first present), of
  shape (N, H, W) or (N, H, W, C), either float in [-1, 1] or uint8 0..255 (mapped to
  [-1, 1]). Images of another size are resized to `image_size` as the real data is
  (`gen_jax.data.datasets`: Pillow bilinear on [0, 1] pixels).

  Args:
    path: the .npz file.
    image_size: the config's data.image_size.
    channels: the data's channels (None: not checked).
    min_samples: the fewest samples the metrics need.
  Returns:
    images (N, image_size, image_size, C) float32 in [-1, 1], and the manifest's
    'external' entry (path, sha256, n, shape, key, value range, resize).
  Raises:
    UserError: a missing or unreadable file, no known key, a wrong rank or channel count,
      NaNs or infinities, values out of range, or too few samples.
  """
  fix = f'give an .npz with {" or ".join(repr(k) for k in _SAMPLE_KEYS)}: (N, H, W[, C]) in [-1, 1] or uint8'
  if not os.path.isfile(path):
    raise UserError(f'eval.samples_file={path} does not exist; {fix}.')
  try:
    with np.load(path, allow_pickle=False) as f:
      key = next((k for k in _SAMPLE_KEYS if k in f.files), None)
      if key is None:
        raise UserError(f'eval.samples_file={path} has no array {" or ".join(_SAMPLE_KEYS)} '
                        f'(it has {sorted(f.files)}); {fix}.')
      images = f[key]
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # np.load raises many kinds
    raise UserError(f'eval.samples_file={path} is not a readable .npz ({type(e).__name__}: '
                    f'{" ".join(str(e).split())}); {fix}.') from None
  shape = tuple(int(d) for d in images.shape)
  if images.ndim == 3:
    images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
  if images.ndim != 4 or images.shape[1] != images.shape[2]:
    raise UserError(f'eval.samples_file={path}: {key!r} has shape {shape}; {fix}, '
                    f'square images.')
  if channels is not None and images.shape[-1] != channels:
    raise UserError(f'eval.samples_file={path}: {key!r} has {images.shape[-1]} channels, the '
                    f'data {channels} (shape {shape}); give samples of the dataset.')
  if images.dtype == np.uint8:
    value_range = 'uint8 0..255, mapped to [-1, 1]'
    images = images.astype(np.float32) / 127.5 - 1.0
  elif np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer):
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
      raise UserError(f'eval.samples_file={path}: {key!r} holds '
                      f'{int(np.sum(~np.isfinite(images)))} NaN or infinite values; {fix}.')
    low, high = float(images.min()), float(images.max())
    if low < -1.0 - 1e-3 or high > 1.0 + 1e-3:
      raise UserError(f'eval.samples_file={path}: {key!r} has values in [{low:.4g}, '
                      f'{high:.4g}], outside [-1, 1]; {fix} (uint8 for 0..255).')
    value_range = 'float in [-1, 1]'
  else:
    raise UserError(f'eval.samples_file={path}: {key!r} is {images.dtype}; {fix}.')
  if len(images) < min_samples:
    raise UserError(f'eval.samples_file={path} has {len(images)} samples; the metrics need at '
                    f'least {min_samples} (eval.pr_neighbours + 1 and eval.is_splits).')
  resize = 'none'
  if images.shape[1] != image_size:
    resize = f'{images.shape[1]}px -> {image_size}px, Pillow bilinear (as the real data)'
    images = np.clip(arrays.resize((np.clip(images, -1, 1) + 1) / 2, image_size),
                     0.0, 1.0) * 2.0 - 1.0
  with open(path, 'rb') as f:
    sha256 = hashlib.sha256(f.read()).hexdigest()
  external = {'path': os.path.abspath(path), 'sha256': sha256, 'n': int(len(images)),
              'shape': list(shape), 'key': key, 'values': value_range, 'resize': resize}
  return np.clip(images, -1.0, 1.0).astype(np.float32), external


# The manifest fields that say what was measured; two manifests of one step that differ
# in any of them are two results, not one result measured twice.
SETTINGS_FIELDS = ('config_file', 'family', 'dataset', 'image_size', 'params', 'seed',
                   'sampler', 'n_generated', 'reference', 'feature_extractor',
                   'metric_settings')


def keep_earlier_manifest(path: str, manifest: dict) -> str | None:
  """Moves the manifest at `path` (WORKDIR/eval/<step>.json) to the first free
  <step>.<k>.json when it was measured under other settings than `manifest`.

  Returns:
    Where it went, or None (no earlier manifest, an unreadable one, or the same settings).
  """
  try:
    with open(path) as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    return None
  if all(earlier.get(k) == manifest.get(k) for k in SETTINGS_FIELDS):
    return None
  stem, k = path[:-len('.json')], 1
  while os.path.exists(f'{stem}.{k}.json'):
    k += 1
  os.replace(path, f'{stem}.{k}.json')
  return f'{stem}.{k}.json'


class Evaluator:
  """Scores samples of one experiment: the extractor and real features are built once."""

  def __init__(self, experiment, config_file: str = ''):
    self.experiment = experiment
    self.config = experiment.config
    self.config_file = config_file
    # The data block the extractor and the real features see: data.image_size, or
    # eval.image_size when set (a model trained at 8px, scored by a 16px classifier).
    self.data_config = self.config.data.copy_and_resolve_references()
    self.image_size = int(self.config.eval.image_size or self.config.data.image_size)
    with self.data_config.unlocked():
      self.data_config.image_size = self.image_size
    self.is_chief = jax.process_index() == 0
    self._extractor = None
    self._reference = None
    self._floor = None

  # --- the pieces, built on first use ------------------------------------------------
  def images_supported(self) -> bool:
    """Sample metrics need images (ring8's 2-d points have their own metrics)."""
    return bool(self.experiment.makes_images)

  def extractor(self):
    if self._extractor is None:
      self._extractor = build_extractor(self.config.eval, self.data_config, self.experiment.mesh)
    return self._extractor

  def reference(self) -> tuple[FeatureSet, str]:
    if self._reference is None:
      e = self.config.eval
      self._reference = reference_sets.real_features(
          self.data_config, e.split, self.extractor(), e.cache_dir, e.reference_examples)
    return self._reference

  def floor(self) -> dict[str, float]:
    """The sample metrics of the held-out real split against the reference."""
    if self._floor is None:
      held_out, _ = reference_sets.real_features(self.data_config, self.config.data.eval_split,
                                                 self.extractor(), self.config.eval.cache_dir)
      metrics = sample_metrics(held_out, self.reference()[0], self.config.eval,
                               self.extractor().num_classes)
      metrics.pop('class_accuracy', None)
      self._floor = dict(metrics, n=float(len(held_out)))
    return self._floor

  def prepare(self, floor: bool) -> None:
    """Everything the sample metrics need, before any sampling or bound: the extractor
    (the classifier run and its checkpoint, or the Inception weights file) and the real
    data's features (the reference split and, with `floor`, the held-out split), so that
    a missing piece fails in seconds, not after the samples are drawn. Cached: the later
    calls reuse what was built here."""
    if not self.images_supported():
      return
    self.extractor()
    self.reference()
    if floor:
      self.floor()

  def to_eval_size(self, images: np.ndarray) -> np.ndarray:
    """Generated images (N, H, W, C) in [-1, 1] at the evaluation's size: resized as the
    real data is (Pillow bilinear on [0, 1] pixels) when eval.image_size differs."""
    if images.shape[1] == self.image_size:
      return images
    return np.clip(arrays.resize((np.clip(images, -1, 1) + 1) / 2, self.image_size),
                   0.0, 1.0) * 2.0 - 1.0

  # --- generation ----------------------------------------------------------------------
  def generate(self, state, num_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """num_samples images (N, H, W, C) in [-1, 1] and the classes asked for (or None)."""
    e = self.config.eval
    batch = min(e.batch_size, num_samples)
    labels = self.experiment.eval_labels(num_samples)  # (N,) or None
    base = jax.random.fold_in(jax.random.PRNGKey(e.seed), rng_streams.EVALUATION)
    images, start = [], time.time()
    for i, first in enumerate(range(0, num_samples, batch)):
      batch_labels = None if labels is None else labels[first:first + batch]
      images.append(self.experiment.sample_images(state, jax.random.fold_in(base, i), batch,
                                                  batch_labels, e.use_ema))
      done = first + batch
      if self.is_chief and num_samples > batch:
        rate = done / max(time.time() - start, 1e-9)
        print(f'eval: {done}/{num_samples} samples | {rate:.2f} samples/s | '
              f'ETA {format_duration((num_samples - done) / rate)}', flush=True)
    return np.concatenate(images), labels

  # --- the programs --------------------------------------------------------------------
  def metrics(self, state, num_samples: int) -> dict[str, float]:
    """The family's own metrics and, for images, the sample metrics ('eval/...')."""
    if num_samples:
      self.prepare(floor=False)
    start = time.time()
    scalars = dict(self.experiment.evaluate(state, int(jax.device_get(state.step))))
    if self.is_chief and scalars:
      print(f'eval: {self.config.family} metrics in {time.time() - start:.0f} s: ' +
            ', '.join(f'{k} {v:.4g}' for k, v in scalars.items()), flush=True)
    if self.images_supported() and num_samples:
      images, labels = self.generate(state, num_samples)
      features, probs = self.extractor()(self.to_eval_size(images))
      generated = FeatureSet(features, probs, labels)
      scalars.update({f'eval/{k}': v for k, v in sample_metrics(
          generated, self.reference()[0], self.config.eval,
          self.extractor().num_classes).items()})
    return scalars

  def score(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float]:
    """The sample metrics (unprefixed) of images (N, H, W, C) in [-1, 1]."""
    features, probs = self.extractor()(self.to_eval_size(images))
    return sample_metrics(FeatureSet(features, probs, labels), self.reference()[0],
                          self.config.eval, self.extractor().num_classes)

  def score_file(self, path: str, workdir: str) -> str:
    """`--mode=eval` with `eval.samples_file`: scores the file's samples as `run` scores
    generated ones; writes WORKDIR/eval/external_<name>.json.

    Returns:
      The manifest's path.
    """
    e = self.config.eval
    if not self.images_supported():
      raise UserError(f'eval.samples_file scores images; the {self.config.family} family '
                      f'of this config makes none.')
    start = time.time()
    image_shape = self.experiment.image_shape
    images, external = load_samples(path, self.image_size,
                                    image_shape[-1] if image_shape else None,
                                    max(e.pr_neighbours + 1, e.is_splits, 2))
    self.prepare(floor=e.floor)
    metrics = self.score(images)
    name = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(workdir, 'eval', f'external_{name}.json')
    manifest = self._manifest(metrics, len(images), start)
    manifest['external'] = external
    manifest['config_file'] = self.config_file
    if self.is_chief:
      self._write(manifest, out)
      print(f'scored {path} ({external["n"]} samples, {external["values"]}, resize '
            f'{external["resize"]}): ' +
            ', '.join(f'{k} {v:.4g}' for k, v in metrics.items()), flush=True)
      if 'floor' in manifest:
        print(f'floor ({self.config.data.eval_split} vs {e.split}, real data): ' +
              ', '.join(f'{k} {v:.4g}' for k, v in manifest['floor'].items()
                        if isinstance(v, float)), flush=True)
      print(f'wrote {out}', flush=True)
    return out

  def _manifest(self, metrics: dict, n: int, start: float) -> dict:
    """The manifest of an external file's scores (the fields `run` writes for images)."""
    e = self.config.eval
    reference, reference_path = self.reference()
    manifest = {
        'family': self.config.family, 'dataset': self.config.data.dataset,
        'image_size': self.image_size, 'checkpoint_step': None,
        'params': 'external', 'seed': e.seed, 'sampler': 'external', 'metrics': metrics,
        'n_generated': n,
        'reference': {'split': e.split, 'n': len(reference),
                      'fingerprint': reference.fingerprint(), 'cache': reference_path},
        'feature_extractor': self.extractor().describe(),
        'metric_settings': {'kid_subsets': e.kid_subsets, 'kid_subset_size': e.kid_subset_size,
                            'pr_neighbours': e.pr_neighbours, 'is_splits': e.is_splits},
    }
    if e.floor:
      manifest['floor'] = dict(self.floor(), split=self.config.data.eval_split)
    manifest['config'] = json.loads(self.config.to_json_best_effort())
    manifest['wall_time_s'] = round(time.time() - start, 2)
    manifest['date'] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    return manifest

  @staticmethod
  def _write(manifest: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      json.dump(manifest, f, indent=2, sort_keys=True)
      f.write('\n')

  def run(self, state, workdir: str) -> str:
    """`--mode=eval`: scores `state`, writes WORKDIR/eval/<step>.json, logs eval/...

    Returns:
      The manifest's path.
    """
    e = self.config.eval
    step = int(jax.device_get(state.step))
    start = time.time()
    self.prepare(floor=e.floor)
    scalars = self.metrics(state, e.num_samples)
    manifest = {
        'config_file': self.config_file,
        'family': self.config.family,
        'dataset': self.config.data.dataset,
        'image_size': self.image_size,
        'checkpoint_step': step,
        'params': 'ema' if e.use_ema else 'raw',
        'seed': e.seed,
        'sampler': self.experiment.sampler_settings(),
        'metrics': {k[len('eval/'):]: v for k, v in scalars.items()},
    }
    if self.images_supported():
      reference, reference_path = self.reference()
      manifest.update({
          'n_generated': e.num_samples,
          'reference': {'split': e.split, 'n': len(reference),
                        'fingerprint': reference.fingerprint(), 'cache': reference_path},
          'feature_extractor': self.extractor().describe(),
          'metric_settings': {'kid_subsets': e.kid_subsets,
                              'kid_subset_size': e.kid_subset_size,
                              'pr_neighbours': e.pr_neighbours, 'is_splits': e.is_splits},
      })
      if e.floor:
        floor = self.floor()
        manifest['floor'] = dict(floor, split=self.config.data.eval_split)
    manifest['config'] = json.loads(self.config.to_json_best_effort())
    manifest['paper'] = {'source': e.paper.source,
                         'results': [list(r) for r in e.paper.results]}
    manifest['wall_time_s'] = round(time.time() - start, 2)
    manifest['date'] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    path = os.path.join(workdir, 'eval', f'{step}.json')
    if self.is_chief:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      kept = keep_earlier_manifest(path, json.loads(json.dumps(manifest, sort_keys=True)))
      if kept:
        print(f'the earlier evaluation of step {step} (other settings) is kept as {kept}',
              flush=True)
      with open(path, 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write('\n')
      logger = metric_log.MetricLogger(workdir)
      try:
        logged = dict(scalars)
        if 'floor' in manifest:
          logged.update({f'eval_floor/{k}': v for k, v in manifest['floor'].items()
                         if isinstance(v, float)})
        logger.write(step, logged)
      finally:
        logger.close()
      print(f'eval at step {step} ({manifest["wall_time_s"]:.0f} s): ' +
            ', '.join(f'{k} {v:.4g}' for k, v in manifest['metrics'].items()), flush=True)
      if 'floor' in manifest:
        print(f'floor ({self.config.data.eval_split} vs {e.split}, real data): ' +
              ', '.join(f'{k} {v:.4g}' for k, v in manifest['floor'].items()
                        if isinstance(v, float)), flush=True)
      print(f'wrote {path}', flush=True)
    return path
