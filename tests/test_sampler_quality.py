"""experiments.sampler_quality end to end on a tiny run: every row scored, NFE counted,
the JSON, markdown table and plot written; bad sampler lists are one-line errors."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO, TINY_DDPM, assert_one_line_error, launch_env, run_launch
from tests.test_evaluation import TINY_CLASSIFIER

def _quality(*args):
  return subprocess.run([sys.executable, '-m', 'experiments.sampler_quality', *args], cwd=REPO,
                        env=launch_env(2),
                        capture_output=True, text=True, timeout=900)


def test_quality_table_on_a_tiny_run(tmp_path):
  ddpm, classifier = str(tmp_path / 'ddpm'), str(tmp_path / 'classifier')
  run_launch([*TINY_DDPM, f'--workdir={ddpm}', '--config.training.num_steps=2'], devices=2,
             timeout=900)
  run_launch([*TINY_CLASSIFIER, f'--workdir={classifier}', '--config.training.num_steps=10',
              '--config.training.eval_every=10'], devices=2, timeout=900)
  out = str(tmp_path / 'out')
  proc = _quality(f'--workdir={ddpm}', f'--classifier_workdir={classifier}',
                  f'--cache_dir={tmp_path}/cache', '--num_samples=16', '--batch_size=8',
                  '--nfe=2,3', '--samplers=ddim,dpmpp_2m,heun:karras', f'--out={out}')
  assert proc.returncode == 0, proc.stdout + proc.stderr
  with open(os.path.join(out, 'sampler_quality.json')) as f:
    result = json.load(f)
  rows = [(r['sampler'], r['sigma_schedule'], r['steps'], r['nfe']) for r in result['rows']]
  assert rows == [('ddpm', 'model', 20, 20), ('ddim', 'model', 2, 2), ('dpmpp_2m', 'model', 2, 2),
                  ('heun', 'karras', 1, 1), ('ddim', 'model', 3, 3), ('dpmpp_2m', 'model', 3, 3),
                  ('heun', 'karras', 2, 3)]
  for r in result['rows']:
    assert r['metrics']['fid'] >= 0 and 0 <= r['metrics']['precision'] <= 1
    assert r['seconds_per_sample'] > 0 and 'classes_covered' in r['metrics']
  assert result['floor']['fid'] >= 0 and result['num_samples'] == 16
  with open(os.path.join(out, 'sampler_quality.md')) as f:
    table = f.read()
  assert table.count('\n') == 2 + len(rows) + 1 and 'real data (floor' in table
  with open(os.path.join(out, 'sampler_quality.png'), 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'

  proc = _quality(f'--workdir={ddpm}', '--samplers=plms')
  assert_one_line_error(proc, '--samplers', 'plms')
