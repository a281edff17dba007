"""Checks that gen_jax's install resolves from wheels on every platform it supports.

    python tools/check_platforms.py [--python_versions=3.12,3.13] [--extras=tfds]

For each platform (Linux x86-64, Linux aarch64, macOS arm64) and Python version, resolves
the base dependencies of pyproject.toml (and with each extra, on the platforms it is for) with
`uv pip compile --python-platform P --only-binary :all:`: uv evaluates the environment
markers for the target platform and accepts a version only if a wheel with a matching
platform tag exists, so a dependency without wheels there (as tensorflow-cpu has none for
aarch64 or macOS) fails the check. pip's `--platform` dry run cannot do this here: it
evaluates markers for the machine it runs on and refuses every source distribution, and
tensorflow-datasets needs `promise`, which PyPI has only as a pure-Python source
distribution (SOURCE_ONLY below: built from source, it installs on every platform).

Needs uv (the test extra has it) and access to the package index. Prints one line per
check and exits 1 if any fails, with uv's reason.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from absl import app
from absl import flags

REPO = Path(__file__).resolve().parent.parent

# uv's target triples: what a researcher's laptop, an ARM GPU host (GH200 / GB200) and an
# x86-64 server or TPU VM run. glibc 2.28 is the oldest manylinux that jax's wheels need.
PLATFORMS = {
    'Linux x86-64': 'x86_64-manylinux_2_28',
    'Linux aarch64': 'aarch64-manylinux_2_28',
    'macOS arm64': 'aarch64-apple-darwin',
    # Cloud TPU VMs (Ubuntu 22.04): libtpu's wheels need glibc 2.31.
    'TPU VM x86-64': 'x86_64-manylinux_2_31',
}
BASE_PLATFORMS = ('Linux x86-64', 'Linux aarch64', 'macOS arm64')
# Extras and the platforms they are for (the accelerator extras are Linux only: JAX ships
# CUDA and TPU plugins for Linux alone).
EXTRA_PLATFORMS = {
    'tfds': BASE_PLATFORMS,
    'gpu': ('Linux x86-64', 'Linux aarch64'),
    'gpu-cuda12': ('Linux x86-64', 'Linux aarch64'),
    'tpu': ('TPU VM x86-64',),
}
# Dependencies PyPI has no wheels of, all pure Python (so they build on any platform).
SOURCE_ONLY = ('promise',)

_PYTHON_VERSIONS = flags.DEFINE_list('python_versions', ['3.12', '3.13'],
                                     'Python versions to resolve for.')
_EXTRAS = flags.DEFINE_list('extras', list(EXTRA_PLATFORMS),
                            'Extras checked too, each on the platforms it is for.')


def requirements(extra: str = '') -> list[str]:
  """The base dependencies of pyproject.toml, or those of one extra."""
  project = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']
  if not extra:
    return list(project['dependencies'])
  return [r for r in project['optional-dependencies'][extra]
          if not r.startswith('gen_jax')]  # an extra naming another extra of this project


def uv_command() -> list[str]:
  found = shutil.which('uv')
  if found:
    return [found]
  try:
    import uv  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit('error: tools/check_platforms.py needs uv: pip install -e ".[test]" (or pip install uv).')
  return [uv.find_uv_bin()]


def resolve(reqs: list[str], platform: str, python_version: str) -> tuple[bool, str]:
  """(resolved, packages or uv's reason) for `reqs` on `platform`, wheels only."""
  command = uv_command() + [
      'pip', 'compile', '-', '--quiet', '--no-header', '--no-annotate',
      '--python-version', python_version, '--python-platform', platform,
      '--only-binary', ':all:']
  for name in SOURCE_ONLY:
    command += ['--no-binary', name]
  proc = subprocess.run(command, input='\n'.join(reqs) + '\n', capture_output=True,
                        text=True, check=False)
  if proc.returncode:
    reason = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return False, ' '.join(reason[-4:])
  pins = [line.split('==')[0] for line in proc.stdout.splitlines()
          if '==' in line and not line.startswith('#')]
  return True, f'{len(pins)} packages'


def main(argv):
  del argv
  checks = [('base', requirements(), BASE_PLATFORMS)]
  checks += [(f'[{e}]', requirements() + requirements(e), EXTRA_PLATFORMS[e])
             for e in _EXTRAS.value]  # an extra with the base install, as pip installs it
  failed = 0
  for python_version in _PYTHON_VERSIONS.value:
    for what, reqs, platforms in checks:
      for name in platforms:
        ok, detail = resolve(reqs, PLATFORMS[name], python_version)
        failed += not ok
        print(f'{"ok  " if ok else "FAIL"} {what:12s} {name:13s} Python {python_version}: '
              f'{detail}', flush=True)
  if failed:
    print(f'{failed} platform check(s) failed: the install does not resolve from wheels '
          f'there (see the reasons above).', file=sys.stderr)
    return 1
  print(f'all wheels (but {", ".join(SOURCE_ONLY)}, pure Python, built from source).')
  return 0


if __name__ == '__main__':
  app.run(main)
