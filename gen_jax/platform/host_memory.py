"""tcmalloc for XLA's CPU backend: `launch.py` re-executes itself with it preloaded.

XLA's CPU runtime allocates every buffer of a step anew and frees it at the end. glibc
malloc serves large blocks with a fresh mmap (and thread arenas give whole heaps back),
so each train step page-faults and zeroes its working set again: on the benchmark's
small U-Net (2-core EPYC, 2 CPU devices) a sixth of the CPU time went to the kernel
(`clear_page`, page faults, munmap). tcmalloc keeps freed pages for reuse: kernel time
fell from 0.33 to 0.01 cores, training ran 1.25x faster, compilation 1.15x.
Tuning glibc instead (one arena, no mmap, no trimming) removed the page faults too, but
slowed compilation by a fifth and gained less.

tcmalloc cannot be loaded into a running process (malloc is already in use), hence the
re-execution, as TPU VM images and Intel's PyTorch launcher preload it. It is a system
library: `apt install libtcmalloc-minimal4` (Debian/Ubuntu). Without it runs go on with
glibc after a one-line note. `parallel.cpu_tcmalloc=False` turns this off.
"""

import ctypes.util
import importlib.metadata
import importlib.util
import os
import sys

_REEXEC_MARK = 'GEN_JAX_TCMALLOC_REEXEC'  # set in the re-executed process: never loop
_LIBRARY_NAMES = ('tcmalloc_minimal', 'tcmalloc')  # ldconfig names, most specific first
_OTHER_ALLOCATORS = ('tcmalloc', 'jemalloc', 'mimalloc')
INSTALL_HINT = ('note: CPU training is about 1.25x faster with tcmalloc, which gen_jax '
                'preloads when installed: apt install libtcmalloc-minimal4')


def use_tcmalloc(environ=None) -> str:
  """Re-executes this process (same interpreter and arguments) with tcmalloc preloaded.

  Call at the start of an entry point, before any work: the process is replaced. Returns
  only when it does not re-execute, with the reason: 'loaded' (this process already
  has tcmalloc or another malloc replacement), 'accelerator' (JAX will compute on a
  GPU/TPU), 'missing' (no tcmalloc library on this system), 'failed' (a re-execution
  did not load it).
  """
  environ = os.environ if environ is None else environ
  decision, library = plan(environ)
  if decision != 'reexec':
    return decision
  env = dict(environ)
  env['LD_PRELOAD'] = ' '.join(filter(None, [library, env.get('LD_PRELOAD', '')]))
  env[_REEXEC_MARK] = '1'
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, env)
  return 'failed'  # not reached: execve replaces the process or raises


def plan(environ) -> tuple[str, str]:
  """(what `use_tcmalloc` does, the library to preload): 'reexec' or why not."""
  if _loaded_allocator():
    return 'loaded', ''
  if environ.get(_REEXEC_MARK):
    return 'failed', ''
  if _accelerator_expected(environ):
    return 'accelerator', ''
  library = find_tcmalloc()
  return ('reexec', library) if library else ('missing', '')


def find_tcmalloc() -> str:
  """The shared library name of tcmalloc on this system (for LD_PRELOAD), or ''."""
  if not sys.platform.startswith('linux'):
    return ''
  return next(filter(None, map(ctypes.util.find_library, _LIBRARY_NAMES)), '')


def _accelerator_expected(environ) -> bool:
  """True when JAX will (probably) compute on a GPU/TPU, judged before it initialises."""
  platforms = environ.get('JAX_PLATFORMS', '').strip().lower()
  if platforms:
    return platforms.split(',')[0] != 'cpu'
  if importlib.util.find_spec('libtpu') is not None:
    return True
  # The CUDA and ROCm plugins register themselves under this entry-point group.
  return bool(importlib.metadata.entry_points(group='jax_plugins'))


def _loaded_allocator() -> str:
  """The name of a malloc replacement mapped into this process, or ''."""
  try:
    with open('/proc/self/maps') as maps:
      text = maps.read()
  except OSError:
    return ''
  return next((name for name in _OTHER_ALLOCATORS if name in text), '')
