"""Metrics to `metrics.jsonl` (one JSON object per logged step) and TensorBoard.

TensorBoard events are written with tensorboard's own record writer and protos into a
plain file: its `EventFileWriter` would import TensorFlow (through `tensorboard.compat`)
when TensorFlow is installed, and we import TensorFlow only for tfds datasets.
Only process 0 writes.
"""

import json
import os
import socket
import time

import numpy as np


class MetricLogger:
  """Appends metrics to WORKDIR/metrics.jsonl and WORKDIR/tensorboard/."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if enabled:
      from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
      from tensorboard.summary.writer.record_writer import RecordWriter  # pylint: disable=g-import-not-at-top
      logdir = os.path.join(workdir, 'tensorboard')
      os.makedirs(logdir, exist_ok=True)
      name = f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}'
      self._tb = RecordWriter(open(os.path.join(logdir, name), 'wb'))  # pylint: disable=consider-using-with
      self._write_event(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))

  def truncate_after(self, step: int) -> None:
    """Drops lines logged after `step` (a resumed run logs them again, identically).

    A line that does not parse (the cut-off last line of a full disk or a kill) is
    dropped too. The file is replaced atomically, so a crash here loses nothing.
    """
    if not self.enabled or not os.path.exists(self.path):
      return
    kept = [json.dumps(record) + '\n' for record in _parse_lines(self.path)
            if record.get('step', 0) <= step]
    partial = f'{self.path}.tmp'
    with open(partial, 'w') as f:
      f.writelines(kept)
    os.replace(partial, self.path)

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), **values}) + '\n')
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
    self._write_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    # A live TensorBoard (or a killed run's events file) sees every step written so far.
    self.flush()

  def _write_event(self, event) -> None:
    self._tb.write(event.SerializeToString())

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(workdir: str) -> list[dict]:
  """All lines of WORKDIR/metrics.jsonl (for tests, notebooks and sweeps)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  return _parse_lines(path)


def _parse_lines(path: str) -> list[dict]:
  """The JSON objects of a .jsonl file, skipping lines that do not parse (cut off)."""
  records = []
  with open(path, errors='replace') as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:
        continue
      if isinstance(record, dict):
        records.append(record)
  return records
