"""experiments.truncation on a tiny BigGAN: one row per threshold, each scored exactly as
`--mode=eval --config.gan.truncation=t` scores it; the table, grids and figure written; a bad
threshold list is a one-line error."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, assert_one_line_error, launch_env, run_launch
from tests.test_biggan_e2e import TINY_BIGGAN
from tests.test_evaluation import TINY_CLASSIFIER

def _truncation(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.truncation', *args], cwd=REPO,
                        env=launch_env(1),
                        capture_output=True, text=True, timeout=900)


def test_truncation_table_matches_mode_eval(tmp_path):
  gan, classifier = str(tmp_path / 'gan'), str(tmp_path / 'classifier')
  cache = str(tmp_path / 'cache')
  run_launch([*TINY_BIGGAN, f'--workdir={gan}', '--config.training.num_steps=2'])
  run_launch([*TINY_CLASSIFIER, f'--workdir={classifier}', '--config.training.num_steps=10',
              '--config.training.eval_every=10'])
  out = str(tmp_path / 'out')
  proc = _truncation(f'--workdir={gan}', f'--classifier_workdir={classifier}',
                     f'--cache_dir={cache}', '--truncations=0.5,2.0', '--num_samples=20',
                     '--batch_size=10', f'--out={out}')
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with open(os.path.join(out, 'truncation.json')) as f:
    result = json.load(f)
  assert [r['truncation'] for r in result['rows']] == [0.5, 2.0]
  fids = [r['metrics']['fid'] for r in result['rows']]
  assert fids[0] != fids[1]  # the threshold changes the samples
  # The same samples and scores as --mode=eval at that threshold (an independent path).
  for row in result['rows']:
    run_launch([*TINY_BIGGAN, f'--workdir={gan}', '--mode=eval',
                f'--config.gan.truncation={row["truncation"]}',
                f'--config.eval.classifier_workdir={classifier}',
                f'--config.eval.cache_dir={cache}', '--config.eval.num_samples=20',
                '--config.eval.batch_size=10'])
    with open(os.path.join(gan, 'eval', '2.json')) as f:
      manifest = json.load(f)
    assert manifest['sampler']['truncation'] == row['truncation']
    for key in ('fid', 'precision', 'recall', 'class_accuracy'):
      assert manifest['metrics'][key] == pytest.approx(row['metrics'][key], rel=1e-5), key
  # Each threshold's evaluation of step 2 is kept: the earlier one as 2.1.json.
  with open(os.path.join(gan, 'eval', '2.1.json')) as f:
    assert json.load(f)['sampler']['truncation'] == result['rows'][0]['truncation']
  assert sorted(os.listdir(os.path.join(gan, 'eval'))) == ['2.1.json', '2.json']
  with open(os.path.join(out, 'truncation.md')) as f:
    table = f.read()
  assert table.count('\n') == 2 + 2 + 1 and 'real data (floor' in table
  for name in ('truncation.png', 'truncation_0.5.png', 'truncation_2.png'):
    with open(os.path.join(out, name), 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', name

  proc = _truncation(f'--workdir={gan}', '--truncations=0.5,-1')
  assert_one_line_error(proc, '--truncations', '-1')
