"""The SkyPilot backend: one managed job per trial, on spot TPUs or GPUs by default.

Each trial's job syncs this repository to the nodes (`workdir`, minus .gitignore'd
files), runs `sweep.setup` once per node, mounts `sweep.bucket` at MOUNT, and runs the
trial's ordinary launch.py command with its workdir in the bucket. Preemption recovery
is SkyPilot's job restart plus the run's own resume from its latest checkpoint: a
preempted trial saves a checkpoint on SIGTERM and exits EXIT_PREEMPTED, which the
job's `recover_on_exit_codes` turns into a restart rather than a finished job. On
several nodes (`sweep.num_nodes`, or a TPU pod slice's hosts) launch.py joins them with
`jax.distributed.initialize` from SkyPilot's node environment (gen_jax.platform.runner).

Needs the `cloud` extra (`pip install -e ".[cloud]"`) and, before the first launch,
`sky check` with cloud credentials. `--dry_run` only builds the tasks and prints them.
"""

import json
import os
import re
import shlex

from gen_jax.platform.errors import UserError
from gen_jax.platform.sweeps import spec

MOUNT = '/gen_jax_runs'  # where the bucket appears on every node
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again", as a preempted trial must


def import_sky():
  """The `sky` module, or a one-line error saying how to install it."""
  try:
    import sky  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError('--backend=skypilot needs SkyPilot: pip install -e ".[cloud]", then '
                    'run `sky check` once with your cloud credentials.') from None
  return sky


def job_name(sweep_name: str, trial: spec.Trial) -> str:
  """A cloud-safe name: lower-case letters, digits and '-', at most 60 characters."""
  name = re.sub(r'[^a-z0-9]+', '-', f'{sweep_name}-{trial.id}'.lower()).strip('-')
  return name[:60].rstrip('-') or 'gen-jax-trial'


def remote_workdir(sweep_name: str, trial: spec.Trial) -> str:
  return f'{MOUNT}/{sweep_name}/{trial.id}'


def setup_command(sweep_config) -> str:
  """`sweep.setup`, or installing this package with the extra of the accelerator."""
  if sweep_config.setup:
    return sweep_config.setup
  extra = '[tpu]' if sweep_config.accelerators.lower().startswith('tpu') else '[gpu]'
  return f'pip install -e ".{extra}"'


def build_tasks(trials: list, flags: dict, config_file: str, repo: str,
                sweep_name: str, sweep_config) -> list:
  """One `sky.Task` per trial (nothing is contacted).

  Args:
    trials: the sweep's trials.
    flags: trial id -> its `--config.k=v` flags.
    config_file: the config file, inside `repo`.
    repo: this repository's root, synced to every node.
    sweep_name: names the jobs and the bucket folder of the trials.
    sweep_config: the config's `sweep` block.
  Returns:
    [(trial, task)].
  """
  sky = import_sky()
  if not sweep_config.bucket:
    raise UserError('--backend=skypilot needs --config.sweep.bucket (e.g. gs://BUCKET/runs): '
                    'the trials write their checkpoints and metrics there.')
  if sweep_config.num_nodes < 1:
    raise UserError(f'sweep.num_nodes must be >= 1, not {sweep_config.num_nodes}.')
  relative_config = os.path.relpath(os.path.abspath(config_file), repo)
  if relative_config.startswith('..'):
    raise UserError(f'--config={config_file} is outside {repo}, the folder synced to the '
                    f'cloud; put it in configs/.')
  accelerator_args = ({'runtime_version': sweep_config.tpu_runtime}
                      if sweep_config.tpu_runtime else None)
  tasks = []
  for trial in trials:
    command = ['python', 'launch.py', f'--config={relative_config}', *flags[trial.id],
               f'--workdir={remote_workdir(sweep_name, trial)}',
               f'--preempted_exit_code={EXIT_PREEMPTED}']
    # SkyPilot logs the defaults it fills in (e.g. the TPU runtime) to stdout, where the
    # dry run's YAML goes; the YAML shows them anyway.
    with sky.sky_logging.silent():
      task = sky.Task(name=job_name(sweep_name, trial), setup=setup_command(sweep_config),
                      run=shlex.join(command), envs={'PYTHONUNBUFFERED': '1'}, workdir=repo,
                      num_nodes=sweep_config.num_nodes)
      task.set_resources(sky.Resources(
          accelerators=sweep_config.accelerators, use_spot=sweep_config.use_spot,
          infra=sweep_config.infra or None, accelerator_args=accelerator_args,
          job_recovery={'recover_on_exit_codes': [EXIT_PREEMPTED]}))
      task.set_storage_mounts({MOUNT: sky.Storage(source=sweep_config.bucket,
                                                  mode=sky.StorageMode.MOUNT)})
    tasks.append((trial, task))
  return tasks


def task_yamls(tasks: list) -> str:
  """The tasks as SkyPilot YAML documents (what `sky jobs launch FILE` takes)."""
  import yaml  # pylint: disable=g-import-not-at-top  # a dependency of skypilot
  documents = []
  for trial, task in tasks:
    documents.append(f'# trial {trial.id}: sky jobs launch -n {task.name} THIS.yaml\n'
                     + yaml.safe_dump(task.to_yaml_config(), sort_keys=False, width=1000))
  return '---\n'.join(documents)


def submit(tasks: list, sweep_name: str) -> list[dict]:
  """Submits one managed job per task; returns [{'trial', 'job_ids', 'workdir'}]."""
  sky = import_sky()
  launched = []
  for trial, task in tasks:
    request = sky.jobs.launch(task, name=task.name)
    job_ids, _ = sky.get(request)
    print(f'[sweep] {trial.id}: managed job {job_ids} ({task.name}); follow it with '
          f'`sky jobs logs {job_ids[0] if job_ids else ""}`', flush=True)
    launched.append({'trial': trial.id, 'job_ids': job_ids, 'job_name': task.name,
                     'workdir': remote_workdir(sweep_name, trial)})
  return launched


def launch_sweep(trials: list, flags: dict, config, config_file: str, repo: str, workdir: str,
                 dry_run: bool) -> int:
  """Builds the trials' tasks and prints them (dry run) or launches them; returns 0.

  The jobs' ids go to WORKDIR/sweep.json; the trials' workdirs are in the bucket, under
  the sweep's name (the last part of WORKDIR).
  """
  name = os.path.basename(workdir)
  tasks = build_tasks(trials, flags, config_file, repo, name, config.sweep)
  if dry_run:  # YAML only on stdout, so that it can be saved or piped
    print(task_yamls(tasks), end='', flush=True)
    return 0
  print(f'[sweep] {len(trials)} trial(s): SkyPilot managed jobs, workdirs in '
        f'{config.sweep.bucket}/{name}', flush=True)
  launched = submit(tasks, name)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
    json.dump({'backend': 'skypilot', 'bucket': config.sweep.bucket, 'trials': launched},
              f, indent=2)
  return 0
