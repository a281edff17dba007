"""Launcher sweeps: one ordinary `launch.py` run per override dict of a sweep file.

`python launch.py --config=C --sweep=FILE --workdir=W [--config.a.b=v ...]` runs trial
i as `launch.py --config=C --config.a.b=v ... <trial i's overrides> --workdir=W/<id>`,
so each trial is a plain run that resumes on its own:
  * spec.py: sweep files, trial ids, overrides checked against the config;
  * local.py (`--backend=local`): subprocesses, `sweep.parallel` at a time;
  * skypilot.py (`--backend=skypilot`): one SkyPilot managed job per trial;
  * summary.py: W/sweep.md and W/sweep.json (local backend).
Small models can also share one program: `sweep.vmap` (gen_jax/core/vmap_trials.py).
"""

import os

from gen_jax.platform.errors import UserError
from gen_jax.platform.sweeps import local
from gen_jax.platform.sweeps import skypilot
from gen_jax.platform.sweeps import spec

BACKENDS = ('local', 'skypilot')


def launch(config, config_file: str, base_overrides: dict, sweep_file: str, workdir: str,
           backend: str = 'local', dry_run: bool = False, mode: str = 'train',
           launch_script: str = '') -> int:
  """Expands and runs a sweep; returns the exit code (0: every trial finished or launched).

  Args:
    config: the resolved config of the sweep command (its --config.* overrides applied).
    config_file: the --config path.
    base_overrides: the command's own --config.* overrides ({field: value}); every
      trial gets them before its own.
    sweep_file: the --sweep path.
    workdir: the sweep's directory; trial workdirs are WORKDIR/<trial id>.
    backend: 'local' or 'skypilot'.
    dry_run: print what would run (commands, or SkyPilot task YAMLs), run nothing.
    mode: the command's --mode (trials train).
    launch_script: launch.py's path (its folder is the repository synced to the cloud).
  Raises:
    UserError: a bad sweep file, override, backend or sweep setting (one line).
  """
  if not workdir:
    raise UserError('--workdir is empty; give a directory for the sweep.')
  if mode != 'train':
    raise UserError(f'--sweep trains its trials; --mode={mode} runs in one trial\'s '
                    f'workdir (WORKDIR/<trial id>) without --sweep.')
  if backend not in BACKENDS:
    raise UserError(f'--backend must be one of {BACKENDS}, not {backend!r}.')
  trials = spec.expand(config, spec.load(sweep_file), f'--sweep={sweep_file}')
  workdir = os.path.abspath(workdir)
  flags = {trial.id: spec.trial_flags(base_overrides, trial) for trial in trials}
  if backend == 'skypilot':
    return skypilot.launch_sweep(trials, flags, config, config_file,
                                 os.path.dirname(launch_script), workdir, dry_run)
  return local.launch_sweep(trials, flags, config, config_file, launch_script, workdir,
                            dry_run)
