"""The redesign is behaviour-neutral: a tiny 5-step run of each family, on 1 and on 8
devices, logs bit-equal train metrics to those tools/make_golden_fixtures.py recorded from
the tree before it (tests/data/golden/runs.json)."""

import json
import os
import re

import pytest

from tests.conftest import read_jsonl, run_launch
from tests.test_golden import copy_runs, run_args, _fixture

# Wall-clock rates are not the computation's.
_TIMING = re.compile(r'steps_per_s|seconds|_time$|eta')


def train_metrics(workdir: str) -> list[dict]:
  return [{k: v for k, v in record.items() if not _TIMING.search(k)}
          for record in read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
          if any(k.startswith('train/') for k in record)]


@pytest.mark.parametrize('devices', [1, 8])
@pytest.mark.parametrize('name', ['ddpm', 'vae', 'vae_spatial', 'ldm', 'dcgan', 'biggan',
                                  'classifier'])
def test_a_tiny_run_logs_the_recorded_metrics(tmp_path, name, devices):
  runs = copy_runs(tmp_path)  # the LDM trains on the recorded autoencoder
  workdir = os.path.join(str(tmp_path), 'new')
  run_launch([*run_args(name, runs), f'--workdir={workdir}'], devices=devices)
  recorded = _fixture('runs.json')['metrics'][name][str(devices)]
  assert len(recorded) == 5
  assert json.loads(json.dumps(train_metrics(workdir))) == recorded
