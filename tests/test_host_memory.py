"""launch.py's tcmalloc re-execution: when it happens, and that it loads tcmalloc."""

import os
import subprocess
import sys

import pytest

from gen_jax.platform import host_memory
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(host_memory._loaded_allocator() != '',  # pylint: disable=protected-access
                                reason='this test process already runs a malloc replacement')


def test_no_reexecution_for_an_accelerator_or_after_a_failed_one():
  assert host_memory.plan({'JAX_PLATFORMS': 'cuda'}) == ('accelerator', '')
  assert host_memory.plan({'JAX_PLATFORMS': 'tpu,cpu'}) == ('accelerator', '')
  # A re-executed process that still lacks tcmalloc must not re-execute again (a loop).
  assert host_memory.plan({'JAX_PLATFORMS': 'cpu', 'GEN_JAX_TCMALLOC_REEXEC': '1'}) == (
      'failed', '')
  decision, library = host_memory.plan({'JAX_PLATFORMS': 'cpu'})
  assert (decision, library) == (('reexec', host_memory.find_tcmalloc())
                                 if host_memory.find_tcmalloc() else ('missing', ''))


def test_use_tcmalloc_reexecutes_with_the_same_arguments():
  code = ('import sys; from gen_jax.platform import host_memory; '
          'print(host_memory.use_tcmalloc(), host_memory._loaded_allocator() or "none", '
          'sys.argv[1:])')
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  env.pop('LD_PRELOAD', None)
  proc = subprocess.run([sys.executable, '-c', code, 'a', '--b=1'], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=True)
  expected = 'loaded tcmalloc' if host_memory.find_tcmalloc() else 'missing none'
  assert proc.stdout.strip() == f"{expected} ['a', '--b=1']", proc.stderr
