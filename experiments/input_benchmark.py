"""Benchmark: images per second the grain input pipeline delivers to one host.

    python -m experiments.input_benchmark [--workdir=DIR] [--images=10000] [--batch=128]
        [--batches=20] [--workers=0,1,2] [--sources=folder,tfds] [--out=FILE]

Generates (once, cached in --workdir) a folder of 10,000 64x64 JPEGs and the same images
as a tfds ArrayRecord dataset, then reads each with gen_jax.data.grain_records.GrainBatchSource
as a training run does (global shuffle, decode, 64x64 center crop, random flips, batches of
--batch) with 0, 1 and 2 worker processes. For each: the start-up time (the first batch,
worker processes included), then, after the batches prepared meanwhile are drained, images/s
over the next --batches batches (a consumer that never waits), and the CPU seconds
this process and its workers spent per image, a figure that holds on a loaded machine too:
cores a host needs = images/s the train step consumes x CPU seconds per image. Prints one
JSON object (also written to --out).
"""

import json
import os
import platform
import resource
import time

from absl import flags
import numpy as np

from experiments import cli
from gen_jax.data import grain_records

SIZE = 64


def define_flags():
  flags.DEFINE_string('workdir', '/tmp/gen_jax_input_benchmark',
                      'Where the generated folder and tfds dataset are cached.')
  flags.DEFINE_integer('images', 10_000, 'Generated 64x64 JPEGs.')
  flags.DEFINE_integer('batch', 128, 'Global batch (one host).')
  flags.DEFINE_integer('batches', 20, 'Timed batches after the first.')
  flags.DEFINE_string('workers', '0,1,2', 'Comma list of data.num_workers.')
  flags.DEFINE_integer('prefetch', 4, 'data.prefetch_batches.')
  flags.DEFINE_string('sources', 'folder,tfds', 'Comma list of: folder, tfds.')
  flags.DEFINE_string('out', None, 'Also write the JSON here.')


def generate_folder(root: str, count: int) -> str:
  """`count` 64x64 JPEGs with photo-like content (smooth shapes plus noise), cached."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  done = os.path.join(root, '.complete')
  if os.path.exists(done):
    return root
  rng = np.random.default_rng(0)
  for i in range(count):
    sub = os.path.join(root, f'{i // 1000:02d}')
    os.makedirs(sub, exist_ok=True)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC))
    noisy = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(os.path.join(sub, f'{i:05d}.jpg'), quality=90)
  open(done, 'w').close()
  return root


def build_tfds(folder: str, data_dir: str) -> str:
  """The folder's JPEGs as a tfds ArrayRecord dataset 'gen_jax_bench_images', cached."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class GenJaxBenchImages(tfds.core.GeneratorBasedBuilder):
    """The generated JPEGs, stored as they are (JPEG bytes) in ArrayRecord."""
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(SIZE, SIZE, 3), encoding_format='jpeg')}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {'train': self._generate_examples()}

    def _generate_examples(self):
      for directory, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
          if name.endswith('.jpg'):
            yield name, {'image': os.path.join(directory, name)}

  GenJaxBenchImages(data_dir=data_dir, file_format='array_record').download_and_prepare()
  return 'gen_jax_bench_images'


def _cpu_seconds() -> float:
  """CPU seconds of this process and its live descendants (grain's workers), from /proc."""
  try:
    parents = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
      try:
        with open(f'/proc/{pid}/stat') as f:
          fields = f.read().rsplit(')', 1)[1].split()
      except OSError:  # exited meanwhile
        continue
      parents[int(pid)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, ticks
    tree, ticks, frontier = {os.getpid()}, 0, [os.getpid()]
    while frontier:
      parent = frontier.pop()
      ticks += parents.get(parent, (0, 0))[1]
      children = [p for p, (pp, _) in parents.items() if pp == parent and p not in tree]
      tree.update(children)
      frontier.extend(children)
    return ticks / os.sysconf('SC_CLK_TCK')
  except OSError:  # no /proc: this process only
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def measure(dataset, workers: int, args) -> dict:
  """Start-up, images/s and CPU seconds per image (timed window only) of one pipeline."""
  t0 = time.perf_counter()
  source = grain_records.GrainBatchSource(dataset, args.batch, seed=0, random_flip=True,
                                           num_workers=workers, prefetch=args.prefetch)
  first = source.batch(0)
  startup = time.perf_counter() - t0
  # Drain what was prepared during start-up, so the window measures the steady rate.
  warm = args.prefetch * max(1, workers)
  for step in range(1, warm + 1):
    source.batch(step)
  cpu0, t1 = _cpu_seconds(), time.perf_counter()
  for step in range(warm + 1, warm + args.batches + 1):
    batch = source.batch(step)
  seconds = time.perf_counter() - t1
  cpu = _cpu_seconds() - cpu0
  source.close()
  assert first['image'].shape == batch['image'].shape == (args.batch, SIZE, SIZE, 3)
  images = args.batch * args.batches
  return {'workers': workers, 'startup_s': round(startup, 2),
          'images_per_s': round(images / seconds, 1),
          'cpu_ms_per_image': round(1000 * cpu / images, 3)}


def main(argv):
  del argv  # no positional arguments (cli.run checks)
  args = cli.flag_values('workdir', 'images', 'batch', 'batches', 'workers', 'prefetch',
                         'sources', 'out')
  import ml_collections  # pylint: disable=g-import-not-at-top
  load_before = os.getloadavg()
  folder = generate_folder(os.path.join(args.workdir, 'jpegs'), args.images)
  config = ml_collections.ConfigDict(dict(image_size=SIZE, data_dir=os.path.join(
      args.workdir, 'tfds'), labels_from_subfolders=False, on_bad_image='fail',
                                          resize='bilinear', crop='center'))
  sources = {}
  if 'folder' in args.sources:
    sources['folder'] = grain_records.folder_dataset(folder, config)
  if 'tfds' in args.sources:
    name = build_tfds(folder, config.data_dir)
    sources['tfds_array_record'] = grain_records.tfds_dataset(name, 'train', config)
  result = {'images': args.images, 'batch': args.batch, 'timed_batches': args.batches,
            'prefetch_batches': args.prefetch, 'results': {}}
  for name, dataset in sources.items():
    result['results'][name] = [measure(dataset, int(w), args)
                               for w in args.workers.split(',')]
  result['host'] = {'cpus': os.cpu_count(), 'machine': platform.machine(),
                    'load_average_before': [round(x, 2) for x in load_before],
                    'load_average_after': [round(x, 2) for x in os.getloadavg()]}
  text = json.dumps(result, indent=2)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text + '\n')


def run():
  """The console script gen-jax-input-benchmark."""
  cli.run(main, define_flags)


if __name__ == '__main__':  # grain's worker processes are spawned: they import this file
  run()
