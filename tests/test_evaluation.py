"""Evaluation: class metrics, the metric suite, the classifier family, and `--mode=eval`
end to end for diffusion, VAE and conditional GAN runs (manifests, floor, cache,
determinism, the ledger, periodic evaluation) and its one-line errors."""

import json
import os

import numpy as np
import pytest

from experiments import evaluation
from experiments import ledger
from experiments import quality_curve
from gen_jax.evaluation import class_metrics
from gen_jax.evaluation.reference_sets import FeatureSet
from tests.conftest import TINY_DDPM, assert_one_line_error, read_jsonl, run_launch
from tests.test_gan_e2e import TINY_CGAN
from tests.test_vae import TINY_VAE

# An 8x8 classifier (the digits' native size) small enough to train in seconds.
TINY_CLASSIFIER = [
    '--config=configs/classifier_digits.py',
    '--config.data.image_size=8',
    '--config.model.features=(16,32)',
    '--config.model.feature_dim=32',
    '--config.model.num_groups=4',
    '--config.training.num_steps=300',
    '--config.training.log_every=100',
    '--config.training.eval_every=300',
    '--config.training.sample_every=0',
    '--config.training.async_checkpoints=False',
]


def _eval_flags(classifier_dir, cache_dir, num_samples=16):
  return [f'--config.eval.classifier_workdir={classifier_dir}',
          f'--config.eval.cache_dir={cache_dir}',
          f'--config.eval.num_samples={num_samples}', '--config.eval.batch_size=16',
          '--config.eval.kid_subsets=10', '--config.eval.is_splits=2']


# --- pure metrics ----------------------------------------------------------------------
def test_class_coverage_on_hand_made_predictions():
  uniform = np.repeat(np.arange(10), 5)
  c = class_metrics.class_coverage(uniform, 10)
  assert c['classes_covered'] == 10 and c['largest_class_fraction'] == pytest.approx(0.1)
  assert c['class_entropy'] == pytest.approx(1.0)
  collapsed = np.zeros(50, np.int64)
  c = class_metrics.class_coverage(collapsed, 10)
  assert c['classes_covered'] == 1 and c['class_entropy'] == pytest.approx(0.0)
  # Two classes at 40% each, the rest spread thin: 8 classes get 2.5% < half of 10%.
  mostly_two = np.concatenate([np.zeros(16), np.ones(16), np.arange(2, 10)]).astype(np.int64)
  assert class_metrics.class_coverage(mostly_two, 10)['classes_covered'] == 2
  assert class_metrics.conditional_accuracy(np.array([1, 2, 3, 4]),
                                            np.array([1, 2, 0, 4])) == pytest.approx(0.75)


def test_sample_metrics_of_a_set_against_itself():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(4), 50)
  features = (rng.normal(size=(200, 8)) + 3 * np.eye(8)[labels]).astype(np.float32)
  probs = np.eye(4, dtype=np.float32)[labels]
  real = FeatureSet(features, probs, labels)
  config = _config_eval_block()
  same = evaluation.sample_metrics(real, real, config, num_classes=4)
  assert abs(same['fid']) < 1e-6
  assert same['precision'] == 1.0 and same['recall'] == 1.0
  assert same['classes_covered'] == 4 and same['inception_score'] == pytest.approx(4.0, rel=1e-4)
  assert same['class_accuracy'] == 1.0
  # A generator that only makes class 0: coverage and recall collapse, FID grows.
  only_zero = FeatureSet(features[labels == 0], probs[labels == 0], labels[labels == 0])
  collapsed = evaluation.sample_metrics(only_zero, real, config, num_classes=4)
  assert collapsed['classes_covered'] == 1 and collapsed['recall'] < 0.5
  assert collapsed['fid'] > 1.0 and collapsed['kid'] > 10 * collapsed['kid_stderr']


def _config_eval_block():
  from experiments import schema  # pylint: disable=g-import-not-at-top
  e = schema.get_schema().eval
  e.kid_subsets = 20
  e.is_splits = 1
  return e


# --- end to end --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def classifier_dir(tmp_path_factory):
  """A trained 8x8 digits classifier run (also the classifier family's own test)."""
  workdir = str(tmp_path_factory.mktemp('classifier'))
  run_launch([*TINY_CLASSIFIER, f'--workdir={workdir}'], devices=2)
  return workdir


def test_classifier_reaches_held_out_accuracy(classifier_dir):
  accuracy = [m['eval/accuracy'] for m in read_jsonl(os.path.join(classifier_dir,
                                                                   'metrics.jsonl'))
              if 'eval/accuracy' in m]
  assert accuracy and accuracy[-1] >= 0.9, accuracy  # 297 held-out digits, 8x8


@pytest.fixture(scope='module')
def ddpm_dir(tmp_path_factory, classifier_dir):
  """A tiny DDPM trained 6 steps, with sample metrics evaluated during training."""
  workdir = str(tmp_path_factory.mktemp('ddpm'))
  cache = str(tmp_path_factory.mktemp('cache'))
  run_launch([*TINY_DDPM, f'--workdir={workdir}', '--config.training.num_steps=6',
              '--config.training.eval_every=3', '--config.eval.num_samples_train=16',
              '--config.sampling.sampler=ddim', '--config.sampling.num_steps=4',
              '--config.eval.vlb_strata=3', '--config.eval.held_out_examples=16',
              *_eval_flags(classifier_dir, cache)], devices=2)
  return workdir, cache


@pytest.fixture(scope='module')
def ddpm_manifest(ddpm_dir, classifier_dir):
  """`--mode=eval` of the DDPM's last checkpoint, with the settings of its in-training
  evaluation (16 samples): (manifest, launch.py's stdout)."""
  workdir, cache = ddpm_dir
  proc = run_launch([*TINY_DDPM, f'--workdir={workdir}', '--mode=eval',
                     '--config.sampling.sampler=ddim', '--config.sampling.num_steps=4',
                     '--config.eval.vlb_strata=3', '--config.eval.held_out_examples=16',
                     *_eval_flags(classifier_dir, cache, num_samples=16)], devices=2)
  with open(os.path.join(workdir, 'eval', '6.json')) as f:
    return json.load(f), proc.stdout


def test_training_logs_periodic_sample_metrics(ddpm_dir):
  lines = read_jsonl(os.path.join(ddpm_dir[0], 'metrics.jsonl'))
  steps = sorted(m['step'] for m in lines if 'eval/fid' in m and 'eval_floor/fid' not in m)
  assert steps == [3, 6]
  assert all('eval/vlb_bits_per_dim' in m for m in lines if 'eval/fid' in m)


def test_eval_mode_writes_a_complete_deterministic_manifest(ddpm_dir, ddpm_manifest):
  manifest, stdout = ddpm_manifest
  assert 'floor' in stdout and 'wrote' in stdout
  for field in ('metrics', 'n_generated', 'reference', 'feature_extractor', 'sampler', 'seed',
                'params', 'checkpoint_step', 'wall_time_s', 'floor', 'config_file', 'date',
                'config', 'paper'):
    assert field in manifest, field
  assert manifest['n_generated'] == 16 and manifest['checkpoint_step'] == 6
  assert manifest['params'] == 'ema' and manifest['config_file'] == 'configs/ddpm.py'
  assert manifest['sampler']['sampler'] == 'ddim' and manifest['sampler']['steps'] == 4
  assert manifest['reference']['split'] == 'train' and manifest['reference']['n'] == 1500
  assert manifest['floor']['split'] == 'test' and manifest['floor']['n'] == 297
  assert manifest['feature_extractor']['name'] == 'classifier'
  metrics = manifest['metrics']
  for name in ('fid', 'kid', 'kid_stderr', 'precision', 'recall', 'inception_score',
               'classes_covered', 'vlb_bits_per_dim'):
    assert np.isfinite(metrics[name]), name
  # 6 steps of training are far from data; held-out real digits are close to it.
  assert metrics['fid'] > 5 * manifest['floor']['fid']
  assert 0 < metrics['vlb_bits_per_dim'] < 20
  assert os.path.exists(manifest['reference']['cache'])  # computed once, cached
  # Deterministic for the seed: the training run's evaluation of the same checkpoint, in
  # another process (which computed the reference features that this one read back),
  # drew the same samples and got the same numbers.
  lines = read_jsonl(os.path.join(ddpm_dir[0], 'metrics.jsonl'))
  in_training = [m for m in lines if m['step'] == 6 and 'eval/fid' in m][0]
  for name in ('fid', 'kid', 'precision', 'recall', 'vlb_bits_per_dim'):
    assert in_training[f'eval/{name}'] == metrics[name], name
  logged = [m for m in lines if 'eval_floor/fid' in m]
  assert logged and logged[-1]['eval/fid'] == metrics['fid']


def test_ledger_table_from_manifests(ddpm_manifest, tmp_path):
  manifest = dict(ddpm_manifest[0])
  os.makedirs(tmp_path / 'ddpm' / 'eval')
  with open(tmp_path / 'ddpm' / 'eval' / '6.json', 'w') as f:
    json.dump(manifest, f)
  # The same numbers claimed by the DDIM config: paper values per step count.
  manifest['config'] = dict(manifest['config'], sampling={'num_steps': 20})
  manifest['paper'] = {'source': 'Song et al. 2021', 'results': [
      ['fid', 13.36, 'sampling.num_steps=10'], ['fid', 6.84, 'sampling.num_steps=20']]}
  os.makedirs(tmp_path / 'ddim' / 'eval')
  with open(tmp_path / 'ddim' / 'eval' / '6.json', 'w') as f:
    json.dump(manifest, f)
  table = ledger.ledger_markdown(str(tmp_path))
  fid_rows = [[c.strip() for c in l.split('|')] for l in table.splitlines() if '| fid |' in l]
  assert len(fid_rows) == 2
  by_run = {row[1].split('(')[1].split(',')[0]: row for row in fid_rows}
  assert by_run['ddim'][3] == '6.84' and by_run['ddpm'][3] == ''  # 20 steps, not 10
  assert by_run['ddim'][4] == f'{manifest["metrics"]["fid"]:.4g}'
  assert by_run['ddim'][5] == f'{manifest["floor"]["fid"]:.4g}'
  assert 'Song et al. 2021' in table


def test_eval_of_vae_and_conditional_gan(classifier_dir, tmp_path):
  cache = str(tmp_path / 'cache')
  vae = str(tmp_path / 'vae')
  run_launch([*TINY_VAE, f'--workdir={vae}', '--config.training.num_steps=3'], devices=2)
  run_launch([*TINY_VAE, f'--workdir={vae}', '--mode=eval',
              *_eval_flags(classifier_dir, cache)], devices=2)
  with open(os.path.join(vae, 'eval', '3.json')) as f:
    metrics = json.load(f)['metrics']
  assert {'fid', 'kid', 'iwae_nll', 'elbo', 'classes_covered'} <= set(metrics)
  assert metrics['iwae_nll'] <= -metrics['elbo'] + 1e-3  # IWAE is the tighter bound
  gan = str(tmp_path / 'cgan')
  run_launch([*TINY_CGAN, f'--workdir={gan}', '--config.training.num_steps=2'], devices=2)
  run_launch([*TINY_CGAN, f'--workdir={gan}', '--mode=eval', '--config.eval.use_ema=False',
              *_eval_flags(classifier_dir, cache, num_samples=40),
              '--config.eval.batch_size=20'], devices=2)
  with open(os.path.join(gan, 'eval', '2.json')) as f:
    manifest = json.load(f)
  assert manifest['params'] == 'raw' and 0.0 <= manifest['metrics']['class_accuracy'] <= 1.0


def test_eval_errors_are_one_line(classifier_dir, tmp_path):
  empty = str(tmp_path / 'empty')
  os.makedirs(empty)  # (a workdir that does not exist is refused before the eval block)
  proc = run_launch([*TINY_DDPM, f'--workdir={empty}', '--mode=eval',
                     *_eval_flags(classifier_dir, str(tmp_path))], check=False)
  assert_one_line_error(proc, 'checkpoint')
  proc = run_launch([*TINY_DDPM, f'--workdir={empty}', '--mode=eval',
                     *_eval_flags(classifier_dir, str(tmp_path), num_samples=40)], check=False)
  assert_one_line_error(proc, 'eval.num_samples=40', 'eval.batch_size=16')
  proc = run_launch([*TINY_DDPM, f'--workdir={empty}', '--mode=eval',
                     '--config.eval.feature_extractor=fancy'], check=False)
  assert_one_line_error(proc, 'eval.feature_extractor', 'fancy')
  proc = run_launch([*TINY_DDPM, f'--workdir={empty}', '--config.training.num_steps=2',
                     '--config.training.eval_every=1', '--config.eval.num_samples_train=16',
                     '--config.eval.feature_extractor=inception',
                     '--config.eval.inception_weights=/nowhere/pt_inception.pth'], check=False)
  assert_one_line_error(proc, '/nowhere/pt_inception.pth', 'pytorch-fid')
  proc = run_launch([*TINY_DDPM, f'--workdir={empty}', '--config.training.num_steps=2',
                     '--config.training.eval_every=1', '--config.eval.num_samples_train=16',
                     f'--config.eval.classifier_workdir={tmp_path}/no_classifier'], check=False)
  assert_one_line_error(proc, 'eval.classifier_workdir', 'classifier_digits.py')


def test_eval_checks_what_it_needs_before_sampling(ddpm_dir, classifier_dir, tmp_path):
  """Issue 13: a missing classifier run was reported after the whole sampling and bound
  (25 minutes with the defaults). Now the extractor and the real data's features come
  first: no sample is drawn, no bound computed ('eval: ...' lines), before the error."""
  workdir, _ = ddpm_dir
  base = [*TINY_DDPM, f'--workdir={workdir}', '--mode=eval', '--config.sampling.sampler=ddim',
          '--config.sampling.num_steps=4', '--config.eval.vlb_strata=3',
          '--config.eval.held_out_examples=16',
          *_eval_flags(classifier_dir, str(tmp_path / 'cache'), num_samples=32)]
  cases = [
      ([f'--config.eval.classifier_workdir={tmp_path}/no_classifier'],
       ['eval.classifier_workdir', 'not a gen_jax run', 'classifier_digits.py']),
      (['--config.eval.feature_extractor=inception',
        f'--config.eval.inception_weights={tmp_path}/pt_inception.pth'],
       [f'{tmp_path}/pt_inception.pth', 'pytorch-fid']),
      (['--config.eval.split=validation'], ["digits has splits", "not 'validation'"]),
  ]
  for extra, needles in cases:
    proc = run_launch([*base, *extra], devices=2, check=False)
    assert_one_line_error(proc, *needles)
    assert proc.returncode == 2
    assert 'eval:' not in proc.stdout, proc.stdout


# --- scoring a sample file (eval.samples_file) -------------------------------------------
def _digits_config(image_size=8):
  from configs import ddpm  # pylint: disable=g-import-not-at-top
  config = ddpm.get_config()
  config.data.image_size = image_size
  return config


def test_real_test_digits_as_a_sample_file_score_the_floor(classifier_dir, tmp_path):
  """The held-out real digits, written as an external .npz, are the floor's own set: the
  same features, so the same FID, KID, precision and recall as the manifest's floor."""
  from gen_jax.data import datasets  # pylint: disable=g-import-not-at-top
  images = datasets.load_dataset(_digits_config().data, 'test').images  # (297, 8, 8, 1)
  path = str(tmp_path / 'test_digits.npz')
  np.savez(path, images=images)
  out = str(tmp_path / 'scored')  # need not exist: only the manifest goes there
  proc = run_launch([*TINY_DDPM, f'--workdir={out}', '--mode=eval',
                     f'--config.eval.samples_file={path}',
                     *_eval_flags(classifier_dir, str(tmp_path / 'cache'))], devices=2)
  assert 'wrote' in proc.stdout
  with open(os.path.join(out, 'eval', 'external_test_digits.json')) as f:
    manifest = json.load(f)
  ext = manifest['external']
  assert ext['n'] == 297 and ext['shape'] == [297, 8, 8, 1] and ext['key'] == 'images'
  assert ext['resize'] == 'none' and ext['values'].startswith('float')
  import hashlib  # pylint: disable=g-import-not-at-top
  with open(path, 'rb') as f:
    assert ext['sha256'] == hashlib.sha256(f.read()).hexdigest()
  assert manifest['params'] == 'external' and manifest['n_generated'] == 297
  assert manifest['floor']['n'] == 297 and manifest['feature_extractor']['name'] == 'classifier'
  for name in ('fid', 'kid', 'precision', 'recall', 'classes_covered', 'inception_score'):
    assert manifest['metrics'][name] == pytest.approx(manifest['floor'][name], rel=1e-4,
                                                      abs=1e-5), name
  assert 'class_accuracy' not in manifest['metrics']  # the file has no labels
  # The anchor's layout: (N, S, S) under 'samples'; a missing file: one line, exit 2.
  proc = run_launch([*TINY_DDPM, f'--workdir={out}', '--mode=eval',
                     f'--config.eval.samples_file={tmp_path}/none.npz',
                     *_eval_flags(classifier_dir, str(tmp_path / 'cache'))], check=False)
  assert_one_line_error(proc, f'{tmp_path}/none.npz', 'does not exist')
  assert proc.returncode == 2


def test_eval_image_size_resizes_samples_as_the_data():
  """eval.image_size: 8px digits resized by the evaluator are the dataset's own 16px
  digits (both Pillow bilinear from the 8x8 grid), and the extractor and reference see
  16px data. Independent routes: gen_jax.data.datasets's loader at 16px vs the evaluator's resize."""
  import types  # pylint: disable=g-import-not-at-top
  from gen_jax.data import datasets  # pylint: disable=g-import-not-at-top
  config = _digits_config(image_size=8)
  config.eval.image_size = 16
  evaluator = evaluation.Evaluator(types.SimpleNamespace(config=config))
  assert evaluator.image_size == 16 and evaluator.data_config.image_size == 16
  assert config.data.image_size == 8  # the run's own config is not touched
  small = datasets.load_dataset(config.data, 'test').images  # (297, 8, 8, 1)
  large = datasets.load_dataset(_digits_config(image_size=16).data, 'test').images
  resized = evaluator.to_eval_size(small)
  assert resized.shape == large.shape == (297, 16, 16, 1)
  np.testing.assert_allclose(resized, large, atol=1e-5)
  assert evaluator.to_eval_size(large) is large  # already at the size: untouched
  config.eval.image_size = 0  # 0: data.image_size
  assert evaluation.Evaluator(types.SimpleNamespace(config=config)).image_size == 8


def test_load_samples_layouts_and_bad_files(tmp_path):
  # digits_anchor.py's layout: (N, 16, 16) in [-1, 1] under 'samples', resized to 8x8.
  anchor = np.concatenate([np.full((3, 16, 16), 1.0), np.full((3, 16, 16), -1.0)])
  np.savez(tmp_path / 'anchor.npz', samples=anchor.astype(np.float32))
  images, ext = evaluation.load_samples(str(tmp_path / 'anchor.npz'), 8, 1, 4)
  assert images.shape == (6, 8, 8, 1) and ext['key'] == 'samples'
  assert ext['shape'] == [6, 16, 16] and 'bilinear' in ext['resize']
  np.testing.assert_allclose(images[:3], 1.0, atol=1e-6)  # constant images stay constant
  np.testing.assert_allclose(images[3:], -1.0, atol=1e-6)
  # uint8 0..255 is detected and mapped: 0 -> -1, 255 -> 1, 51 -> -0.6.
  pixels = np.array([0, 255, 51, 0], np.uint8)[:, None, None, None] * np.ones((1, 8, 8, 1),
                                                                              np.uint8)
  np.savez(tmp_path / 'u8.npz', images=pixels)
  images, ext = evaluation.load_samples(str(tmp_path / 'u8.npz'), 8, 1, 4)
  assert 'uint8' in ext['values'] and ext['resize'] == 'none'
  np.testing.assert_allclose(images[:, 0, 0, 0], [-1.0, 1.0, -0.6, -1.0], atol=1e-6)
  good = np.zeros((8, 8, 8), np.float32)
  bad = {
      'nokey.npz': ({'x': good}, ["'samples' or 'images'", "['x']"]),
      'rank.npz': ({'images': np.zeros((8, 64), np.float32)}, ['shape (8, 64)']),
      'nan.npz': ({'images': np.where(np.arange(8)[:, None, None] == 2, np.nan, good)},
                  ['64 NaN']),
      'range.npz': ({'images': good + 3.0}, ['[3, 3]', 'outside [-1, 1]', 'uint8']),
      'few.npz': ({'images': good[:2]}, ['2 samples', 'at least 4']),
      'rgb.npz': ({'images': np.zeros((8, 8, 8, 3), np.float32)}, ['3 channels', 'data 1']),
  }
  for name, (arrays, needles) in bad.items():
    np.savez(tmp_path / name, **arrays)
    with pytest.raises(evaluation.UserError) as e:
      evaluation.load_samples(str(tmp_path / name), 8, 1, 4)
    message = str(e.value)
    assert '\n' not in message and str(tmp_path / name) in message
    for needle in needles:
      assert needle in message, (name, message)
  (tmp_path / 'junk.npz').write_text('not a zip')
  with pytest.raises(evaluation.UserError, match='not a readable .npz'):
    evaluation.load_samples(str(tmp_path / 'junk.npz'), 8, 1, 4)


# --- quality against wall clock (experiments.quality_curve) -------------------------------
def test_training_minutes_from_log_windows():
  from experiments import quality_curve  # pylint: disable=g-import-not-at-top
  lines = [{'step': 1, 'train/steps_per_s': 0.5},  # 2 s (the first step, with compile)
           {'step': 5, 'train/steps_per_s': 2.0},  # 4 steps in 2 s
           {'step': 5, 'eval/fid': 3.0},  # not a log window
           {'step': 3, 'train/steps_per_s': 0.25},  # resumed at 2: 1 step in 4 s
           {'step': 7, 'train/steps_per_s': 1.0}]  # 4 steps in 4 s
  minutes = quality_curve.training_minutes(lines, log_every=1, num_steps=7)
  # Step 5 was redone after the resume: its first pass's time is spent, its place gone.
  assert minutes == pytest.approx({1: 2 / 60, 3: 8 / 60, 7: 12 / 60})
  assert quality_curve.minutes_at(6, minutes) == pytest.approx(11 / 60)  # 3 of 4 s past 3
  assert quality_curve.minutes_at(2, minutes) == pytest.approx(5 / 60)  # halfway 1 -> 3
  # log_every=10, resumed from checkpoint 15 with the log cut back to step 10: steps 11-15
  # at the rate before (5 s), the first step after the resume 4 s, then the last window
  # (16 -> 20 at num_steps=20, not a multiple of log_every: 4 steps at 1/s).
  lines = [{'step': 1, 'train/steps_per_s': 0.5},  # 2 s
           {'step': 10, 'train/steps_per_s': 1.0},  # 9 s
           {'step': 16, 'train/steps_per_s': 0.25},  # 5 s + 4 s
           {'step': 20, 'train/steps_per_s': 1.0}]  # 4 s
  minutes = quality_curve.training_minutes(lines, log_every=10, num_steps=20)
  assert minutes == pytest.approx({1: 2 / 60, 10: 11 / 60, 15: 16 / 60, 16: 20 / 60,
                                  20: 24 / 60})
  assert quality_curve.minutes_at(15, minutes) == pytest.approx(16 / 60)
  assert quality_curve.parse_external('diffusers:8:/tmp/a:b.npz') == ('diffusers', 8.0,
                                                                      '/tmp/a:b.npz')
  with pytest.raises(evaluation.UserError, match='LABEL:MINUTES:FILE'):
    quality_curve.parse_external('diffusers:eight:/tmp/a.npz')


def test_quality_curve_of_a_tiny_run(ddpm_dir, classifier_dir, tmp_path):
  """The module's tiny DDPM run (6 steps, its checkpoint 6 scored during training), with
  the real test digits as an external point."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from gen_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from tests.conftest import REPO, launch_env  # pylint: disable=g-import-not-at-top
  workdir, cache = ddpm_dir
  digits = str(tmp_path / 'test_digits.npz')
  np.savez(digits, samples=datasets.load_dataset(_digits_config().data, 'test').images[..., 0])
  out = str(tmp_path / 'curve')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.quality_curve',
       f'--workdir={workdir}', f'--classifier_workdir={classifier_dir}', f'--cache_dir={cache}',
       '--num_samples=16', '--batch_size=16', f'--external=real:0.5:{digits}', f'--out={out}'],
      cwd=REPO, env=launch_env(2), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with open(os.path.join(out, 'quality_curve.json')) as f:
    result = json.load(f)
  real, *curve = result['points']
  assert real['label'] == 'real' and real['minutes'] == 0.5 and real['external']['n'] == 297
  for name in ('fid', 'precision', 'recall', 'classes_covered'):  # the floor's own digits
    assert real['metrics'][name] == pytest.approx(result['floor'][name], rel=1e-4, abs=1e-5)
  assert [p['step'] for p in curve] == [6]  # the run's only checkpoint
  # Minutes: the log's windows (log_every=1: one step each) summed independently here.
  lines = read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  seconds = {m['step']: 1 / m['train/steps_per_s'] for m in lines if 'train/steps_per_s' in m}
  assert sorted(seconds) == [1, 2, 3, 4, 5, 6]
  assert curve[0]['minutes'] == pytest.approx(sum(seconds.values()) / 60, rel=1e-6)
  # The same samples and scores as the training run's own evaluation of step 6.
  in_training = [m for m in lines if m['step'] == 6 and 'eval/fid' in m][0]
  for name in ('fid', 'precision', 'recall', 'classes_covered'):
    assert curve[0]['metrics'][name] == pytest.approx(in_training[f'eval/{name}'], rel=1e-5)
  table = open(os.path.join(out, 'quality_curve.md')).read()
  assert table.count('\n') == 2 + 2 + 1 and '| real |  | 0.50 |' in table
  assert os.path.getsize(os.path.join(out, 'quality_curve.png')) > 10_000
  # --merge: the first curve's points join a second one's figure, under their labels.
  bad = tmp_path / 'other.json'
  bad.write_text(json.dumps(dict(result, reference={'split': 'test', 'n': 1})))
  merged = str(tmp_path / 'merged')
  curve_cmd = [sys.executable, '-m', 'experiments.quality_curve',
               f'--workdir={workdir}', f'--classifier_workdir={classifier_dir}',
               f'--cache_dir={cache}', '--num_samples=16', '--batch_size=16', '--label=again',
               f'--merge={out}/quality_curve.json', f'--out={merged}']
  proc = subprocess.run(curve_cmd, cwd=REPO, env=launch_env(2), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with open(os.path.join(merged, 'quality_curve.json')) as f:
    points = json.load(f)['points']
  assert [(p['label'], p['step']) for p in points] == [
      ('real', None), (os.path.basename(workdir), 6), ('again', 6)]
  assert points[2]['metrics'] == pytest.approx(curve[0]['metrics'], rel=1e-5)  # same keys
  proc = subprocess.run([*curve_cmd[:-2], f'--merge={bad}', f'--out={merged}'], cwd=REPO,
                        env=launch_env(2), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and 'scored with another reference' in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1


def test_merge_matches_extractors_by_fingerprint_not_by_path(tmp_path):
  extractor = {'name': 'classifier', 'fingerprint': 'abc', 'source': '/a/classifier',
               'checkpoint_step': 1500}
  result = {'feature_extractor': dict(extractor, source='/b/classifier'),
            'reference': {'split': 'train', 'n': 1500}}
  other = tmp_path / 'other.json'
  other.write_text(json.dumps({'feature_extractor': extractor,
                               'reference': {'split': 'train', 'n': 1500},
                               'points': [{'label': 'x', 'minutes': 1.0}]}))
  assert quality_curve.merged_points(str(other), result) == [{'label': 'x', 'minutes': 1.0}]
  result['feature_extractor']['fingerprint'] = 'abd'  # other weights: refused
  with pytest.raises(quality_curve.UserError, match='another feature extractor'):
    quality_curve.merged_points(str(other), result)


def test_an_evaluation_under_other_settings_keeps_the_earlier_manifest(tmp_path):
  """eval/<step>.json of another truncation moves to <step>.1.json (then .2.json); one of
  the same settings is replaced, not kept twice."""
  from experiments import evaluation  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / '7.json')
  first = {'sampler': {'truncation': 0.5}, 'seed': 0, 'metrics': {'fid': 3.0}}
  assert evaluation.keep_earlier_manifest(path, first) is None  # nothing there yet
  with open(path, 'w') as f:
    json.dump(first, f)
  again = dict(first, metrics={'fid': 3.1})
  assert evaluation.keep_earlier_manifest(path, again) is None  # same settings: replaced
  assert os.listdir(tmp_path) == ['7.json']
  other = dict(first, sampler={'truncation': 2.0})
  assert evaluation.keep_earlier_manifest(path, other) == str(tmp_path / '7.1.json')
  with open(tmp_path / '7.1.json') as f:
    assert json.load(f) == first
  with open(path, 'w') as f:
    json.dump(other, f)
  third = dict(first, seed=1)
  assert evaluation.keep_earlier_manifest(path, third) == str(tmp_path / '7.2.json')
  assert sorted(os.listdir(tmp_path)) == ['7.1.json', '7.2.json']
