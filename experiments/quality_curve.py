"""Quality against wall clock: one run's checkpoints scored at the training time they took.

    python -m experiments.quality_curve --workdir=runs/ddpm \\
        [--classifier_workdir=runs/classifier_digits] [--num_samples=500] [--batch_size=100] \\
        [--steps=400,800,1200] [--external=LABEL:MINUTES:FILE.npz ...] [--out=DIR] \\
        [--label=NAME] [--merge=OTHER/quality_curve.json ...]

Every kept checkpoint of the run (or those of `--steps`) is sampled with the run's own
sampler and EMA parameters (the keys of `--mode=eval`) and scored exactly as `--mode=eval`
scores (experiments/evaluation.py: the same feature extractor, reference split, metrics and
floor). Each checkpoint is placed at the training wall clock, in minutes, that its steps
took: the sum over the log windows of metrics.jsonl up to that step of
steps / train/steps_per_s. The first window after a start (or resume) includes the data
loading and compilation, as a user waits for them; steps redone after a resume count again.
Keep the checkpoints the curve needs: e.g. `--config.training.checkpoint_every=400
--config.training.keep_checkpoints=100`.

`--external=LABEL:MINUTES:FILE.npz` (repeatable) scores a sample file the same way
(`eval.samples_file`'s loader: 'samples' or 'images', [-1, 1] or uint8, resized as the
data) and puts it on the plot at MINUTES, e.g. the diffusers anchor of
tools/diffusers_digits_anchor.py trained for that many minutes.

`--merge=FILE.json` (repeatable) adds the points of another run's quality_curve.json (e.g.
a VAE's and a GAN's beside this DDPM's) to the same table and figure; they must have been
scored with the same feature extractor and reference (checked by fingerprint). `--label`
names this run's points (default: the workdir's name).

Writes OUT/NAME.json, OUT/NAME.md (a markdown table) and OUT/NAME.png (NAME: `--name`,
default quality_curve) (classifier FID, precision, recall and classes covered against
training minutes); OUT defaults to WORKDIR/quality_curve. Prints the table.
"""

import json
import os

from absl import flags

import experiments
from experiments import cli
from experiments import ledger
from gen_jax.platform.errors import UserError

_PANELS = (('fid', 'classifier FID'), ('precision', 'precision'), ('recall', 'recall'),
           ('classes_covered', 'classes covered'))


_FLAGS = ('workdir', 'classifier_workdir', 'cache_dir', 'num_samples', 'batch_size', 'steps',
          'external', 'out', 'name', 'label', 'merge')


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained gen_jax run (any image family).',
                      required=True)
  flags.DEFINE_string('classifier_workdir', None, "The feature extractor's run (default: the "
                      "run's eval.classifier_workdir).")
  flags.DEFINE_string('cache_dir', None, 'eval.cache_dir for the real features.')
  flags.DEFINE_integer('num_samples', 500, 'Samples per checkpoint.')
  flags.DEFINE_integer('batch_size', 100, 'Samples per generation call.')
  flags.DEFINE_string('steps', '', 'Comma list of checkpoint steps (default: all kept).')
  flags.DEFINE_multi_string('external', [], 'LABEL:MINUTES:FILE.npz, a sample file placed at '
                            'MINUTES.')
  flags.DEFINE_string('out', None, 'Output folder (default WORKDIR/quality_curve).')
  flags.DEFINE_string('name', 'quality_curve',
                      'Stem of the written files: OUT/NAME.{json,md,png}.')
  flags.DEFINE_string('label', None, "This run's points' label (default: its name).")
  flags.DEFINE_multi_string('merge', [], "Another run's quality_curve.json whose points join "
                            'the figure.')


def parse_external(spec: str) -> tuple[str, float, str]:
  """'LABEL:MINUTES:FILE' -> (label, minutes, file)."""
  label, _, rest = spec.partition(':')
  minutes, _, path = rest.partition(':')
  try:
    value = float(minutes)
  except ValueError:
    value = float('nan')
  if not label or not path or not value >= 0:
    raise UserError(f'--external={spec!r}: give LABEL:MINUTES:FILE.npz, e.g. '
                    f'diffusers:8:/tmp/anchor/m8.npz.')
  return label, value, path


def training_minutes(metric_lines: list[dict], log_every: int,
                     num_steps: int) -> dict[int, float]:
  """{step: training wall-clock minutes up to it} at every logged step of metrics.jsonl.

  Each line with train/steps_per_s closes a log window that began at the previous logged
  step and took (step - previous) / steps_per_s seconds. The trainer logs every
  `log_every` steps, at `num_steps`, and one step after each start or resume (that line's
  rate is of that one step, compilation included). A resume cuts metrics.jsonl back to the
  restored step, so the steps from the last kept line to the restored one are counted at
  the rate of the window before them; a log that was not cut back (the same steps logged
  again) keeps the time of both passes, and the steps' place from the last.

  Args:
    metric_lines: metrics.jsonl's lines, in order.
    log_every: the run's training.log_every.
    num_steps: the run's training.num_steps.
  Returns:
    Cumulative minutes by logged step.
  """
  minutes, total, previous, last_rate = {}, 0.0, 0, None
  for line in metric_lines:
    rate = line.get('train/steps_per_s')
    if not rate:
      continue
    step = int(line['step'])
    if step <= previous:  # the same steps again: a resume whose old lines were kept
      previous = step - 1
      minutes = {s: m for s, m in minutes.items() if s <= previous}
    elif step % log_every and step != num_steps and step - previous > 1 and last_rate:
      # The first line after a resume at step - 1: the steps since the last line ran
      # before the stop, at about the rate before it.
      total += (step - 1 - previous) / last_rate
      previous = step - 1
      minutes[previous] = total / 60.0  # the restored checkpoint's step
    total += (step - previous) / rate
    previous, last_rate = step, rate
    minutes[step] = total / 60.0
  return minutes


def minutes_at(step: int, minutes: dict[int, float]) -> float:
  """Training minutes at `step`, interpolated linearly between logged steps."""
  steps = sorted(minutes)
  if not steps or step > steps[-1]:
    raise UserError(f'metrics.jsonl has no train/steps_per_s up to step {step}; a curve '
                    f'needs the run\'s own log.')
  lower = max([s for s in steps if s <= step], default=0)
  upper = min(s for s in steps if s >= step)
  m_low = minutes.get(lower, 0.0)
  if upper == lower:
    return m_low
  return m_low + (minutes[upper] - m_low) * (step - lower) / (upper - lower)


def _without_source(description):
  """A feature extractor's or reference's description without the path it came from."""
  if isinstance(description, dict):
    return {k: v for k, v in description.items() if k != 'source'}
  return description


def merged_points(path: str, result: dict) -> list[dict]:
  """The points of another quality_curve.json, if scored as `result` is.

  Args:
    path: a quality_curve.json written by this program.
    result: this run's result so far (its feature extractor and reference).
  Returns:
    The other file's points.
  Raises:
    UserError: a missing or unreadable file, or one scored with another extractor or
      reference (its numbers would not be comparable).
  """
  try:
    with open(path) as f:
      other = json.load(f)
    points = other['points']
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f'--merge={path} is not a readable quality_curve.json ({type(e).__name__}: '
                    f'{e}); give the file experiments.quality_curve wrote.') from None
  for key in ('feature_extractor', 'reference'):
    # Where the extractor was loaded from does not matter: its fingerprint names its weights.
    if _without_source(other.get(key)) != _without_source(result[key]):
      raise UserError(f'--merge={path} was scored with another {key.replace("_", " ")} '
                      f'({other.get(key)} vs {result[key]}); score both runs with the same '
                      f'eval settings.')
  return points


def markdown_table(result: dict) -> str:
  lines = ['| run | step | training minutes | FID | precision | recall | classes covered |',
           '|---|---:|---:|---:|---:|---:|---:|']
  for r in result['points']:
    m = r['metrics']
    step = '' if r['step'] is None else r['step']
    lines.append(f"| {r['label']} | {step} | {r['minutes']:.2f} | {m['fid']:.3f} | "
                 f"{m['precision']:.3f} | {m['recall']:.3f} | "
                 f"{m.get('classes_covered', float('nan')):.0f} |")
  f = result.get('floor')
  if f:
    lines.append(f"| real data (floor, n={int(f['n'])}) | | | {f['fid']:.3f} | "
                 f"{f['precision']:.3f} | {f['recall']:.3f} | "
                 f"{f.get('classes_covered', float('nan')):.0f} |")
  return '\n'.join(lines) + '\n'


def plot(result: dict, path: str) -> None:
  import matplotlib
  import matplotlib.ticker
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 2, figsize=(9, 6.5), dpi=100)
  labels = list(dict.fromkeys(p['label'] for p in result['points']))
  for ax, (key, title) in zip(axes.flat, _PANELS):
    for label in labels:
      points = sorted((p['minutes'], p['metrics'].get(key, float('nan')))
                      for p in result['points'] if p['label'] == label)
      external = any(p['external'] is not None for p in result['points'] if p['label'] == label)
      ax.plot([p[0] for p in points], [p[1] for p in points], label=label,
              marker='s' if external else 'o', linestyle='none' if external else '-')
    if result.get('floor') and key in result['floor']:
      ax.axhline(result['floor'][key], color='gray', linestyle=':', label='real data (floor)')
    if key == 'fid':
      ax.set_yscale('log')  # minutes-old models and the floor differ by 20x
      ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel('training minutes (wall clock)')
    ax.set_ylabel(title)
  axes.flat[-1].legend(fontsize=8, loc='lower right')  # the emptiest panel
  fig.suptitle(f"quality against training minutes ({result['num_samples']} samples per point)")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write(result: dict, out: str, name: str = 'quality_curve') -> str:
  """Writes OUT/NAME.json, the markdown table OUT/NAME.md and the plot OUT/NAME.png;
  returns the table."""
  table = markdown_table(result)
  ledger.write_report(out, name, result, table, plot)
  return table


def curve(args) -> dict:
  """The quality curve of the flags' run (`args`: their values), written to OUT."""
  workdir = os.path.abspath(args.workdir)
  externals = [parse_external(spec) for spec in args.external]
  for path in args.merge:
    if not os.path.isfile(path):
      raise UserError(f'--merge={path} does not exist; give a quality_curve.json.')
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.exists(config_path):
    raise UserError(f'--workdir={args.workdir} is not a gen_jax run (no config.json).')
  with open(config_path) as f:
    family = json.load(f)['family']
  config = experiments.read_run_config(args.workdir, family)
  mesh = experiments.scoring_mesh(config, args)
  import jax
  from experiments import evaluation
  from gen_jax.platform import checkpoint
  from gen_jax.platform import metric_log
  from gen_jax.core import trainer
  experiment = experiments.build(config, mesh)
  evaluator = evaluation.Evaluator(experiment)
  if not evaluator.images_supported():
    raise UserError(f'--workdir={args.workdir}: the {family} family makes no images to score.')
  ckpt = checkpoint.Checkpointer(workdir, async_save=False)
  kept = ckpt.all_steps()
  steps = sorted({int(s) for s in args.steps.split(',') if s.strip()}) if args.steps else kept
  missing = sorted(set(steps) - set(kept))
  if missing or not steps:
    raise UserError(f'--workdir={args.workdir} has checkpoints {kept}, not {missing or steps}; '
                    f'train with more kept (training.keep_checkpoints) or pick from those.')
  minutes = training_minutes(metric_log.read_metrics(workdir), config.training.log_every,
                             config.training.num_steps)
  placed = {step: minutes_at(step, minutes) for step in steps}  # fails before any sampling
  evaluator.prepare(floor=config.eval.floor)
  result = {'run': os.path.basename(workdir), 'workdir': workdir, 'family': family,
            'num_samples': args.num_samples, 'seed': config.eval.seed,
            'sampler': experiment.sampler_settings(),
            'params': 'ema' if config.eval.use_ema else 'raw',
            'feature_extractor': evaluator.extractor().describe(),
            'reference': {'split': config.eval.split, 'n': len(evaluator.reference()[0]),
                          'fingerprint': evaluator.reference()[0].fingerprint()},
            'floor': evaluator.floor() if config.eval.floor else None, 'points': []}
  out = os.path.abspath(args.out or os.path.join(workdir, 'quality_curve'))
  run_label = args.label or result['run']
  for path in args.merge:
    result['points'].extend(merged_points(path, result))
  for label, at, path in externals:  # first: a bad file fails before any sampling
    images, external = evaluation.load_samples(
        path, evaluator.image_size, (experiment.image_shape or (None,))[-1],
        max(config.eval.pr_neighbours + 1, config.eval.is_splits, 2))
    result['points'].append({'label': label, 'step': None, 'minutes': at, 'external': external,
                             'metrics': evaluator.score(images)})
    print(f'{label} at {at:g} min: FID {result["points"][-1]["metrics"]["fid"]:.3f}', flush=True)
  abstract = trainer.abstract_state(experiment, jax.random.PRNGKey(config.seed))
  for step in steps:
    state = ckpt.restore(abstract, step)
    images, labels = evaluator.generate(state, args.num_samples)
    metrics = evaluator.score(images, labels)
    result['points'].append({'label': run_label, 'step': step, 'minutes': placed[step],
                             'external': None, 'metrics': metrics})
    print(f'step {step} ({placed[step]:.2f} min): FID {metrics["fid"]:.3f}, precision '
          f'{metrics["precision"]:.3f}, recall {metrics["recall"]:.3f}', flush=True)
    table = write(result, out, args.name)  # each point: an interruption keeps the rest
  table = write(result, out, args.name)
  print(table + f'wrote {out}/{args.name}.{{json,md,png}}', flush=True)
  return result


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  curve(cli.flag_values(*_FLAGS))  # UserError: cli.run


def run():
  """The console script gen-jax-quality-curve."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
