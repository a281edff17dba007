"""Quality per network evaluation: one trained diffusion run sampled with several samplers.

    python -m experiments.sampler_quality --workdir=runs/ddpm \\
        [--classifier_workdir=runs/classifier_digits] [--num_samples=256] \\
        [--nfe=5,10,20,50] [--samplers=ddim,dpmpp_2m,heun:karras,euler:karras] \\
        [--no_ddpm] [--out=DIR]

For each sampler (NAME or NAME:karras for the Karras noise levels) and each target number
of network evaluations (NFE; Heun's 2S-1 takes the nearest S), generates `--num_samples`
images with the run's EMA parameters and its other sampling settings (clipping, guidance),
and scores them exactly as `--mode=eval` does (experiments/evaluation.py: the same feature
extractor, reference split, sample keys and metrics), beside DDPM with all T steps and the
real-data floor (the held-out split against the reference). Seconds per sample are timed
after a separate compile, on the batches after the first.

Writes OUT/sampler_quality.json, OUT/sampler_quality.md (a markdown table) and
OUT/sampler_quality.png (FID against NFE, one line per sampler); OUT defaults to
WORKDIR/sampler_quality. Prints the table.
"""

import os
import time

from absl import flags
import ml_collections

import experiments
from experiments import cli
from experiments import ledger
from gen_jax.core import rng_streams
from gen_jax.platform.errors import UserError


_FLAGS = ('workdir', 'classifier_workdir', 'cache_dir', 'num_samples', 'batch_size', 'nfe',
          'samplers', 'no_ddpm', 'out')


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained diffusion run.', required=True)
  flags.DEFINE_string('classifier_workdir', None, "The feature extractor's run (default: the "
                      "run's eval.classifier_workdir).")
  flags.DEFINE_string('cache_dir', None, 'eval.cache_dir for the real features.')
  flags.DEFINE_integer('num_samples', 256, 'Samples per sampler setting.')
  flags.DEFINE_integer('batch_size', 64, 'Samples per generation call.')
  flags.DEFINE_string('nfe', '5,10,20,50', 'Comma list of target NFEs.')
  flags.DEFINE_string('samplers', 'ddim,dpmpp_2m,heun:karras,euler:karras',
                      'Comma list of SAMPLER or SAMPLER:karras.')
  flags.DEFINE_bool('no_ddpm', False, 'Skip the DDPM (all T steps) row.')
  flags.DEFINE_string('out', None, 'Output folder (default WORKDIR/sampler_quality).')


def steps_for(sampler: str, nfe: int) -> int:
  """Solver steps whose NFE is nearest `nfe` (Heun: 2S - 1 evaluations)."""
  return max(1, (nfe + 1) // 2) if sampler == 'heun' else nfe


def settings(args) -> list[dict]:
  """One dict per row to measure: sampler, sigma_schedule, steps."""
  from gen_jax.diffusion import samplers
  specs = []
  for spec in args.samplers.split(','):
    name, _, schedule = spec.strip().partition(':')
    schedule = schedule or 'model'
    if name not in samplers.SAMPLERS or name == 'ddpm':
      raise UserError(f'--samplers: unknown sampler {name!r}; use names of '
                      f'{samplers.SAMPLERS[1:]}, optionally with :karras.')
    if schedule not in ('model', 'karras') or (name == 'ddim' and schedule != 'model'):
      raise UserError(f"--samplers: {spec!r}: the schedule is 'model' or 'karras' (not "
                      f'for ddim).')
    specs.append((name, schedule))
  # DDPM first, then the fewest evaluations first: an interrupted run has whole NFE columns.
  rows = [] if args.no_ddpm else [{'sampler': 'ddpm', 'sigma_schedule': 'model', 'steps': 0}]
  for nfe in sorted({int(n) for n in args.nfe.split(',')}):
    rows += [{'sampler': name, 'sigma_schedule': schedule, 'steps': steps_for(name, nfe)}
             for name, schedule in specs]
  return rows


def label(row) -> str:
  return row['sampler'] + (' karras' if row['sigma_schedule'] == 'karras' else '')


def configure(config, row) -> ml_collections.ConfigDict:
  """The run's config with the row's sampler (all other sampling settings kept)."""
  config = ml_collections.ConfigDict(config.to_dict())
  s = config.sampling
  s.sampler = row['sampler']
  if row['sampler'] != 'ddpm':
    s.num_steps = row['steps']
  if row['sampler'] not in ('ddpm', 'ddim'):
    s.sigma_schedule = row['sigma_schedule']
    s.spacing = 'uniform'
  elif row['sampler'] == 'ddim':
    s.eta = 0.0
  return config


def generate_timed(experiment, state, num_samples: int, batch: int, seed: int):
  """The evaluation's samples (same keys and labels as Evaluator.generate), timed.

  Returns:
    (images (N, H, W, C), labels or None, compile seconds, seconds per sample measured on
    the batches after the first (all of them when there is one)).
  """
  import jax
  import numpy as np
  from gen_jax.core import parallel
  labels = experiment.eval_labels(num_samples)
  base = jax.random.fold_in(jax.random.PRNGKey(seed), rng_streams.EVALUATION)
  sampler = experiment.sampler(batch)
  params = state.ema_params

  def inputs(i):
    key = parallel.replicate(np.asarray(jax.device_get(jax.random.fold_in(base, i))),
                             experiment.mesh)
    first = i * batch
    lab = (labels[first:first + batch] if labels is not None
           else experiment.sample_labels(batch))
    return key, parallel.shard_host_array(np.asarray(lab, np.int32), experiment.mesh)

  t0 = time.perf_counter()
  compiled = sampler.lower(params, *inputs(0)).compile()
  compile_s = time.perf_counter() - t0
  images, times = [], []
  for i in range(num_samples // batch):
    t0 = time.perf_counter()
    samples = jax.block_until_ready(compiled(params, *inputs(i)))
    times.append(time.perf_counter() - t0)
    images.append(experiment.to_images(state, parallel.global_to_host(samples)))
  timed = times[1:] or times
  return np.concatenate(images), labels, compile_s, sum(timed) / (len(timed) * batch)


def markdown_table(result: dict) -> str:
  lines = ['| sampler | steps | NFE | FID | precision | recall | classes covered | '
           's / sample |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  for r in result['rows']:
    m = r['metrics']
    lines.append(f"| {label(r)} | {r['steps']} | {r['nfe']} | {m['fid']:.2f} | "
                 f"{m['precision']:.3f} | {m['recall']:.3f} | "
                 f"{m.get('classes_covered', float('nan')):.0f} | "
                 f"{r['seconds_per_sample']:.4f} |")
  f = result['floor']
  lines.append(f"| real data (floor, n={int(f['n'])}) | | | {f['fid']:.2f} | "
               f"{f['precision']:.3f} | {f['recall']:.3f} | "
               f"{f.get('classes_covered', float('nan')):.0f} | |")
  return '\n'.join(lines) + '\n'


def plot(result: dict, path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
  lines = {}
  for r in result['rows']:
    if r['sampler'] != 'ddpm':
      lines.setdefault(label(r), []).append((r['nfe'], r['metrics']['fid']))
  for name, points in lines.items():
    points.sort()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=name)
  for r in result['rows']:
    if r['sampler'] == 'ddpm':
      ax.axhline(r['metrics']['fid'], color='black', linestyle='--',
                 label=f"ddpm ({r['nfe']} NFE)")
  ax.axhline(result['floor']['fid'], color='gray', linestyle=':', label='real data (floor)')
  ax.set_xscale('log')
  ax.set_xlabel('network evaluations (NFE)')
  ax.set_ylabel('classifier FID')
  ax.set_title(f"{result['run']}: {result['num_samples']} samples per point")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def score(args) -> dict:
  """The sampler table of the flags' run (`args`: their values), written to OUT."""
  workdir = os.path.abspath(args.workdir)
  config = experiments.read_run_config(args.workdir, 'diffusion')
  rows = settings(args)
  mesh = experiments.scoring_mesh(config, args)
  from experiments import evaluation
  from gen_jax.core import trainer
  from gen_jax.evaluation.reference_sets import FeatureSet
  base = experiments.build(configure(config, rows[0]), mesh)
  state = trainer.restore_latest(base, workdir)
  evaluator = evaluation.Evaluator(base)
  reference = evaluator.reference()[0]
  num_classes = evaluator.extractor().num_classes
  result = {'run': os.path.basename(workdir), 'workdir': workdir,
            'checkpoint_step': int(state.step), 'num_samples': args.num_samples,
            'batch_size': args.batch_size, 'seed': config.eval.seed,
            'feature_extractor': evaluator.extractor().describe(),
            'reference': {'split': config.eval.split, 'n': len(reference)},
            'sampling': {k: v for k, v in config.sampling.to_dict().items()
                         if k in ('clip_x0', 'guidance_scale', 'class_label')},
            'floor': evaluator.floor(), 'rows': []}
  out = os.path.abspath(args.out or os.path.join(workdir, 'sampler_quality'))
  for row in rows:
    experiment = experiments.build(configure(config, row), mesh)
    images, labels, compile_s, per_sample = generate_timed(
        experiment, state, args.num_samples, args.batch_size, config.eval.seed)
    features, probs = evaluator.extractor()(images)
    metrics = evaluation.sample_metrics(FeatureSet(features, probs, labels), reference,
                                        config.eval, num_classes)
    entry = dict(row, steps=experiment.sampler_settings()['steps'], nfe=experiment.nfe(),
                 name=experiment.sampler_name(), metrics=metrics,
                 compile_s=round(compile_s, 2), seconds_per_sample=per_sample)
    result['rows'].append(entry)
    print(f"{entry['name']}: NFE {entry['nfe']}, FID {metrics['fid']:.2f}, precision "
          f"{metrics['precision']:.3f}, recall {metrics['recall']:.3f}, "
          f"{per_sample:.4f} s/sample (compile {compile_s:.0f} s)", flush=True)
    table = write(result, out)  # after every row: an interrupted run keeps what it measured
  print(table + f'wrote {out}/sampler_quality.{{json,md,png}}', flush=True)
  return result


def write(result: dict, out: str) -> str:
  """Writes the JSON, the markdown table and the plot into `out`; returns the table."""
  table = markdown_table(result)
  ledger.write_report(out, 'sampler_quality', result, table, plot)
  return table


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  score(cli.flag_values(*_FLAGS))  # UserError: cli.run


def run():
  """The console script gen-jax-sampler-quality."""
  cli.run(main, define_flags)


if __name__ == '__main__':
  run()
