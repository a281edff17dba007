"""The table at the end of a sweep: each trial's overrides, status and final metrics.

Written as WORKDIR/sweep.md (a Markdown table) and WORKDIR/sweep.json (everything,
for notebooks: `pandas.json_normalize(json.load(open(path))['trials'])`).
"""

import json
import math
import os

from gen_jax.platform import metric_log

SMOOTHING = 5  # logged losses averaged in the 'last 5 logs' column (one is noisy)


def is_loss(name: str) -> bool:
  """A logged training loss: train/loss, or a family's own (the GAN's train/d_loss and
  train/g_loss)."""
  return name.startswith('train/') and name.endswith('loss')


def smoothed(name: str) -> str:
  return f'{name}, last {SMOOTHING} logs'


def final_metrics(workdir: str) -> dict:
  """The last logged value of every metric of a run, and for each training loss the mean
  of its last SMOOTHING logs (empty when the run logged nothing)."""
  lines = metric_log.read_metrics(workdir)
  final = {}
  for line in lines:
    final.update(line)
  for name in [k for k in final if is_loss(k)]:
    values = [line[name] for line in lines if name in line][-SMOOTHING:]
    final[smoothed(name)] = sum(values) / len(values)
  return final


def _cell(value) -> str:
  if isinstance(value, float):
    return f'{value:.4g}' if math.isfinite(value) else str(value)
  return str(value)


def write(workdir: str, rows: list[dict]) -> str:
  """Writes sweep.md and sweep.json; returns the Markdown table.

  Args:
    workdir: the sweep's directory.
    rows: one per trial: {'trial', 'overrides' (dict), 'status', 'message', 'workdir',
      'command', 'final' (from `final_metrics`)}.
  """
  # Every family's losses (the GAN logs one per player and no train/loss), then eval/*.
  losses = sorted({k for row in rows for k in row['final'] if is_loss(k)}) or ['train/loss']
  metrics = ['step'] + [m for name in losses for m in (name, smoothed(name))]
  metrics += sorted({k for row in rows for k in row['final'] if k.startswith('eval/')})
  header = ['trial', 'overrides', 'status'] + metrics
  lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
  for row in rows:
    overrides = ', '.join(f'{k}={v}' for k, v in row['overrides'].items()) or '(none)'
    status = row['status'] + (f': {row["message"]}' if row.get('message') else '')
    cells = [row['trial'], overrides, status.replace('|', '/')]
    cells += [_cell(row['final'].get(m, '')) for m in metrics]
    lines.append('| ' + ' | '.join(cells) + ' |')
  table = '\n'.join(lines) + '\n'
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'sweep.md'), 'w') as f:
    f.write(table)
  with open(os.path.join(workdir, 'sweep.json'), 'w') as f:
    json.dump({'trials': rows}, f, indent=2, default=str)
    f.write('\n')
  return table
