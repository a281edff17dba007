"""The reproducibility ledger: every evaluation under a runs directory, beside what the
paper its config reproduces reported.

    python -m experiments.ledger RUNS_DIR [--output=RUNS_DIR/ledger.md]

Reads RUNS_DIR/**/eval/<step>.json (the manifests `--mode=eval` writes), prints one
Markdown table (config, metric, paper value, our value, real-data floor, n, steps,
extractor, date, weights: trained here or imported from a published checkpoint) and
writes it to RUNS_DIR/ledger.md. A paper value appears where the config's
`eval.paper.results` names the metric and its condition (e.g. 'sampling.num_steps=10')
holds for the evaluated config.
"""

import glob
import json
import os
import sys

from absl import flags

from experiments import cli

# Metrics that get a row whenever a manifest has them (paper metrics always do).
HEADLINE_METRICS = ('fid', 'kid', 'precision', 'recall', 'inception_score', 'classes_covered',
                    'class_accuracy', 'vlb_bits_per_dim', 'iwae_nll', 'iwae_bits_per_dim',
                    'elbo', 'modes_covered', 'accuracy')
# Metrics of generated samples (n samples, one feature extractor); the rest are the
# family's own (likelihood bounds on held-out data, mode coverage, accuracy).
SAMPLE_METRICS = ('fid', 'kid', 'precision', 'recall', 'inception_score', 'classes_covered',
                  'class_entropy', 'largest_class_fraction', 'class_accuracy')
COLUMNS = ('config', 'metric', 'paper', 'ours', 'floor', 'n', 'steps', 'extractor', 'date',
           'weights')
IMPORTED = 'imported.json'  # written into a run by experiments.import_diffusers


def weights_origin(run_dir: str) -> str:
  """'trained', or 'imported SOURCE[@REVISION]' for a run made by import_diffusers.py."""
  path = os.path.join(run_dir, IMPORTED)
  if not os.path.exists(path):
    return 'trained'
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return 'imported (unreadable imported.json)'
  revision = record.get('revision')
  return f'imported {record.get("source", "?")}' + (f'@{revision[:8]}' if revision else '')


def find_manifests(runs_dir: str) -> list[str]:
  return sorted(glob.glob(os.path.join(runs_dir, '**', 'eval', '*.json'), recursive=True))


def _config_value(config: dict, dotted: str):
  value = config
  for part in dotted.split('.'):
    if not isinstance(value, dict) or part not in value:
      return None
    value = value[part]
  return value


def condition_holds(condition: str, config: dict) -> bool:
  """'' always holds; 'a.b=v' holds when the config's a.b, as text, is v."""
  if not condition:
    return True
  field, _, expected = condition.partition('=')
  value = _config_value(config, field.strip())
  return value is not None and str(value) == expected.strip()


def paper_values(manifest: dict) -> dict[str, tuple[float, str]]:
  """metric -> (paper value, source) for the results whose condition holds."""
  paper = manifest.get('paper') or {}
  values = {}
  for metric, value, condition in paper.get('results', []):
    if condition_holds(condition, manifest.get('config', {})):
      values[metric] = (float(value), paper.get('source', ''))
  return values


def _fmt(value) -> str:
  if value is None or value == '':
    return ''
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


def rows_of(manifest: dict, path: str, runs_dir: str) -> list[dict]:
  """The ledger rows of one manifest."""
  metrics = manifest.get('metrics', {})
  paper = paper_values(manifest)
  floor = manifest.get('floor', {})
  run = os.path.relpath(os.path.dirname(os.path.dirname(path)), runs_dir)
  config = manifest.get('config_file') or manifest.get('family', '?')
  sampler = manifest.get('sampler', {})
  steps = sampler.get('steps', sampler.get('name', ''))
  extractor = manifest.get('feature_extractor', {})
  extractor_name = (f'{extractor["name"]} {extractor["fingerprint"][:8]}' if extractor else '')
  origin = weights_origin(os.path.dirname(os.path.dirname(path)))
  names = [m for m in HEADLINE_METRICS if m in metrics or m in paper]
  names += sorted(m for m in paper if m not in names)
  rows = []
  for name in names:
    of_samples = name in SAMPLE_METRICS
    row = {'config': f'{config} ({run}, step {manifest.get("checkpoint_step", "?")})',
           'metric': name, 'paper': paper.get(name, (None, ''))[0], 'ours': metrics.get(name),
           'floor': floor.get(name), 'n': manifest.get('n_generated', '') if of_samples else '',
           'steps': steps, 'extractor': extractor_name if of_samples else '',
           'date': manifest.get('date', '')[:10], 'weights': origin}
    rows.append(row)
  return rows


def ledger_markdown(runs_dir: str) -> str:
  """The ledger of every manifest under `runs_dir`, as a Markdown table."""
  paths = find_manifests(runs_dir)
  if not paths:
    raise FileNotFoundError(f'no evaluation manifests (*/eval/<step>.json) under {runs_dir}; '
                            f'run launch.py --mode=eval first.')
  rows, sources = [], set()
  for path in paths:
    with open(path) as f:
      manifest = json.load(f)
    rows.extend(rows_of(manifest, path, runs_dir))
    for _, source in paper_values(manifest).values():
      sources.add(source)
  lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
  lines += ['| ' + ' | '.join(_fmt(row[c]) for c in COLUMNS) + ' |' for row in rows]
  if sources:
    lines += [''] + [f'Paper values: {source}' for source in sorted(sources)]
  lines += ['', 'floor: the same metric for the held-out real split against the reference '
            '(real data vs real data).']
  return '\n'.join(lines) + '\n'


def write_report(out: str, stem: str, result: dict, table: str, plot) -> None:
  """Writes OUT/STEM.json (`result`), OUT/STEM.md (`table`) and OUT/STEM.png (`plot(result,
  path)`), each replaced whole so a reader never sees a half-written file."""
  os.makedirs(out, exist_ok=True)
  for name, text in ((stem + '.json', json.dumps(result, indent=2) + '\n'), (stem + '.md', table)):
    with open(os.path.join(out, name + '.tmp'), 'w') as f:
      f.write(text)
    os.replace(os.path.join(out, name + '.tmp'), os.path.join(out, name))
  plot(result, os.path.join(out, stem + '.png'))


def define_flags():
  flags.DEFINE_string('output', '', 'Markdown file (default RUNS_DIR/ledger.md).')


def main(argv) -> int:
  runs_dir = argv[1]  # the one positional argument (cli.run checks)
  try:
    table = ledger_markdown(runs_dir)
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(table, end='')
  output = flags.FLAGS.output or os.path.join(runs_dir, 'ledger.md')
  with open(output, 'w') as f:
    f.write(table)
  print(f'wrote {output}')
  return 0


def run():
  """The console script gen-jax-ledger."""
  cli.run(main, define_flags, arguments=('RUNS_DIR',))


if __name__ == '__main__':
  run()
