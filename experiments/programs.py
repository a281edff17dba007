"""What `launch.py` runs: a mode ('train', 'sample' or 'eval') of the config's family.

`run` runs `run_mode` inside `gen_jax.platform.runner.session`, which sets up devices,
processes and stop requests around it; the library never imports this package.
"""

from gen_jax.core import parallel
from gen_jax.core import trainer
from gen_jax.core import vmap_trials
from gen_jax.platform import runner
from gen_jax.platform.errors import UserError


def run(config, workdir: str, mode: str = 'train', config_file: str = '',
        **distributed) -> str:
  """Runs `mode` of `config` in `workdir` (inside `gen_jax.platform.runner.session`).

  Args:
    config: the run's config.
    workdir: the run's directory.
    mode: 'train', 'sample' or 'eval'.
    config_file: the config's path (recorded in evaluation manifests).
    **distributed: coordinator_address, num_processes, process_id, and
      lost_peer_exit_code (the exit code when a peer process dies; 0: 75).
  Returns:
    What happened ('done', 'preempted', the sample files or the manifest written).
  """
  with runner.session(config, workdir, mode, **distributed) as run_session:
    run_session.result = run_mode(config, run_session.workdir, mode, config_file)
  return run_session.result


def run_mode(config, workdir: str, mode: str, config_file: str = '') -> str:
  """One mode of the config's family, on devices already set up (all processes call it)."""
  import experiments  # pylint: disable=g-import-not-at-top  # the registry imports this module's users
  from experiments import evaluation  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  # Every family splits the global batch over all devices: checked once, before any compile.
  parallel.check_divisible(config.training.batch_size, 'training.batch_size', mesh)
  experiment = experiments.build(config, mesh)
  if vmap_trials.requested(config):  # sweep.vmap: N trials of the family in one program
    experiment = vmap_trials.VmappedTrials(experiment, mode)
  if mode == 'train':
    evaluate = None
    if config.training.eval_every and config.eval.num_samples_train:
      evaluation.validate(config, mesh, config.eval.num_samples_train)
      evaluator = evaluation.Evaluator(experiment, config_file)
      evaluator.extractor()  # a missing classifier or weights file fails now, not later
      evaluate = lambda state, step: evaluator.metrics(state, config.eval.num_samples_train)
    return trainer.train(experiment, workdir, evaluate)
  if mode == 'sample':
    state = trainer.restore_latest(experiment, workdir)
    step = int(state.step)
    return experiment.write_samples(state, step, workdir, prefix='sample')
  if mode == 'eval':
    evaluation.validate(config, mesh, config.eval.num_samples)
    if config.eval.samples_file:
      return evaluation.Evaluator(experiment, config_file).score_file(
          config.eval.samples_file, workdir)
    state = trainer.restore_latest(experiment, workdir)
    return evaluation.Evaluator(experiment, config_file).run(state, workdir)
  raise UserError(f'unknown mode {mode!r}.')
