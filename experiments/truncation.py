"""The truncation trade-off of one trained GAN run: sample grids and scores per threshold.

    python -m experiments.truncation --workdir=runs/biggan [--truncations=0.5,1.0,2.0] \\
        [--num_samples=1024] [--batch_size=256] [--classifier_workdir=DIR] [--out=DIR]

For each threshold t (`gan.truncation`: every |z_i| > t redrawn; 0 means no truncation),
generates `--num_samples` images from the run's latest checkpoint (EMA parameters, the run's
`gan.sample_bn_stats`) and scores them exactly as `--mode=eval` does
(experiments/evaluation.py: the same feature extractor, reference split, sample keys and
balanced classes), beside the real-data floor. Smaller t trades variety (recall) for
fidelity (precision, class accuracy): Brock et al. 2019, section 3.1.

Writes OUT/truncation.json, OUT/truncation.md (a table: FID, IS, precision, recall,
class accuracy per threshold) and OUT/truncation.png (one sample grid per threshold above
FID and IS against the threshold); OUT defaults to WORKDIR/truncation. Prints the table.
"""

import os

from absl import flags

import experiments
from experiments import cli
from experiments import ledger
from gen_jax.platform.errors import UserError

GRID_SAMPLES = 100  # samples drawn in each threshold's grid (a row a class if conditional)


_FLAGS = ('workdir', 'truncations', 'num_samples', 'batch_size', 'classifier_workdir',
          'cache_dir', 'out')


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained GAN run.', required=True)
  flags.DEFINE_string('truncations', '0.5,1.0,2.0',
                      'Comma list of thresholds (0: no truncation).')
  flags.DEFINE_integer('num_samples', 1024, 'Samples per threshold.')
  flags.DEFINE_integer('batch_size', 256, 'Samples per generation call.')
  flags.DEFINE_string('classifier_workdir', None, "The feature extractor's run (default: the "
                      "run's eval.classifier_workdir).")
  flags.DEFINE_string('cache_dir', None, 'eval.cache_dir for the real features.')
  flags.DEFINE_string('out', None, 'Output folder (default WORKDIR/truncation).')


def thresholds(spec: str) -> list[float]:
  """'0.5,1.0,2.0' -> [0.5, 1.0, 2.0]; a one-line error for anything not a number >= 0."""
  try:
    values = [float(t) for t in spec.split(',') if t.strip()]
  except ValueError:
    values = []
  if not values or any(t < 0 for t in values):
    raise UserError(f'--truncations={spec!r} must be a comma list of numbers >= 0 '
                    '(0: no truncation), e.g. 0.5,1.0,2.0.')
  return values


def markdown_table(result: dict) -> str:
  lines = ['| truncation | FID | IS | precision | recall | class accuracy |',
           '|---:|---:|---:|---:|---:|---:|']
  nan = float('nan')
  for r in result['rows']:
    m = r['metrics']
    lines.append(f"| {r['truncation'] or 'off'} | {m['fid']:.2f} | "
                 f"{m.get('inception_score', nan):.2f} | {m['precision']:.3f} | "
                 f"{m['recall']:.3f} | {m.get('class_accuracy', nan):.3f} |")
  f = result['floor']
  lines.append(f"| real data (floor, n={int(f['n'])}) | {f['fid']:.2f} | "
               f"{f.get('inception_score', nan):.2f} | {f['precision']:.3f} | "
               f"{f['recall']:.3f} | |")
  return '\n'.join(lines) + '\n'


def plot(result: dict, path: str) -> None:
  """One grid per threshold (top row) above FID and IS against the threshold."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import numpy as np
  from gen_jax.platform import viz
  rows = result['rows']
  fig = plt.figure(figsize=(3 * max(len(rows), 2), 6), dpi=100)
  for i, r in enumerate(rows):
    ax = fig.add_subplot(2, len(rows), i + 1)
    grid = viz.image_grid(np.load(r['grid_npz'])['images'], r['grid_cols'])
    ax.imshow(grid.squeeze(), cmap='gray' if grid.ndim == 2 or grid.shape[-1] == 1 else None)
    ax.set_title(f"truncation {r['truncation'] or 'off'}: FID {r['metrics']['fid']:.2f}",
                 fontsize=8)
    ax.axis('off')
  ax = fig.add_subplot(2, 1, 2)
  cut = [r for r in rows if r['truncation'] > 0]  # lines over the thresholds
  off = [r for r in rows if r['truncation'] == 0]  # no truncation: a dashed level
  ax.plot([r['truncation'] for r in cut], [r['metrics']['fid'] for r in cut], marker='o',
          label='FID')
  for r in off:
    ax.axhline(r['metrics']['fid'], color='C0', linestyle='--', label='FID, no truncation')
  ax.axhline(result['floor']['fid'], color='gray', linestyle=':', label='FID of real data')
  ax.set_xlabel('truncation threshold')
  ax.set_ylabel('classifier FID')
  if all('inception_score' in r['metrics'] for r in rows):
    twin = ax.twinx()
    twin.plot([r['truncation'] for r in cut], [r['metrics']['inception_score'] for r in cut],
              marker='s', color='C1', label='IS')
    for r in off:
      twin.axhline(r['metrics']['inception_score'], color='C1', linestyle='--',
                   label='IS, no truncation')
    twin.set_ylabel('Inception Score (classifier)')
    twin.legend(loc='upper right', fontsize=8)
  ax.legend(loc='upper left', fontsize=8)
  ax.set_title(f"{result['run']} at step {result['checkpoint_step']}: "
               f"{result['num_samples']} samples per threshold", fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def score(args) -> dict:
  """The truncation table of the flags' run (`args`: their values), written to OUT."""
  workdir = os.path.abspath(args.workdir)
  config = experiments.read_run_config(args.workdir, 'gan')
  values = thresholds(args.truncations)
  if config.model.arch == 'mlp' or config.data.dataset == 'ring8':
    raise UserError('experiments.truncation scores images; this run is the 2-d ring8 toy.')
  mesh = experiments.scoring_mesh(config, args)
  import numpy as np
  from experiments import evaluation
  from gen_jax.core import trainer
  from gen_jax.platform import viz
  base = experiments.build(config, mesh)
  state = trainer.restore_latest(base, workdir)
  evaluator = evaluation.Evaluator(base)
  evaluator.prepare(floor=True)
  out = os.path.abspath(args.out or os.path.join(workdir, 'truncation'))
  os.makedirs(out, exist_ok=True)
  result = {'run': os.path.basename(workdir), 'workdir': workdir,
            'checkpoint_step': int(state.step), 'num_samples': args.num_samples,
            'seed': config.eval.seed, 'params': 'ema' if config.eval.use_ema else 'raw',
            'sample_bn_stats': config.gan.sample_bn_stats,
            'feature_extractor': evaluator.extractor().describe(),
            'floor': evaluator.floor(), 'rows': []}
  for t in values:
    config.gan.truncation = t
    experiment = experiments.build(config, mesh)
    # The same keys and balanced labels as --mode=eval; only the threshold differs.
    evaluator.experiment = experiment
    images, labels = evaluator.generate(state, args.num_samples)
    metrics = evaluator.score(images, labels)
    grid = images[:GRID_SAMPLES]
    cols = 10
    if labels is not None:  # row c: the first samples of class c (the eval labels are i mod K)
      k = int(labels.max()) + 1
      cols = max(1, min(GRID_SAMPLES, len(images)) // k)
      grid = np.concatenate([images[labels == c][:cols] for c in range(k)])
    name = f'truncation_{t:g}'
    viz.save_grid(os.path.join(out, name + '.png'), grid, ncols=cols)
    np.savez_compressed(os.path.join(out, name + '.npz'), images=grid.astype(np.float32))
    result['rows'].append({'truncation': t, 'metrics': metrics, 'grid_cols': cols,
                           'grid_npz': os.path.join(out, name + '.npz')})
    print(f"truncation {t:g}: FID {metrics['fid']:.2f}, IS "
          f"{metrics.get('inception_score', float('nan')):.2f}, precision "
          f"{metrics['precision']:.3f}, recall {metrics['recall']:.3f}", flush=True)
    table = markdown_table(result)
    ledger.write_report(out, 'truncation', result, table, plot)  # after every threshold
  print(table + f'wrote {out}/truncation.{{json,md,png}}', flush=True)
  return result


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  score(cli.flag_values(*_FLAGS))  # UserError: cli.run


def run():
  """The console script gen-jax-truncation."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
