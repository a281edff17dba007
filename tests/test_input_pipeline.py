"""The grain input pipeline: image folders and ArrayRecord tfds, the memory loader's batch
order, exact resume, per-process slices, preprocessing and bad input."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from gen_jax.data import arrays
from gen_jax.data import datasets
from gen_jax.data import grain_records
from gen_jax.platform.errors import UserError


def data_config(dataset, size=8, **kw):
  fields = dict(dataset=dataset, image_size=size, data_dir='', train_split='train',
                eval_split='test', random_flip=False, loader='grain', num_workers=0,
                prefetch_batches=2, labels_from_subfolders=False, on_bad_image='fail',
                resize='bilinear', crop='center', max_memory_bytes=4 * 2**30)
  fields.update(kw)
  return ml_collections.ConfigDict(fields)


def write_folder(root, classes=('cat', 'dog', 'emu'), per_class=7, seed=0):
  """PNG and JPEG images of varied sizes and aspect ratios in class subfolders."""
  rng = np.random.default_rng(seed)
  for c, name in enumerate(classes):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(per_class):
      h, w = 10 + (i % 3) * 3, 9 + (i % 4) * 2
      image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
      ext = 'jpg' if i % 2 else 'png'
      Image.fromarray(image).save(os.path.join(root, name, f'{c}_{i}.{ext}'))
  return root


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return write_folder(str(tmp_path_factory.mktemp('images')))


def grain_source(dataset, batch=8, seed=0, process_index=0, process_count=1, flip=True,
                 workers=0, on_bad='fail'):
  return grain_records.GrainBatchSource(dataset, batch, seed, process_index, process_count,
                                         flip, num_workers=workers, prefetch=2,
                                         on_bad_image=on_bad)


def assert_same_batch(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- the memory loader's order -------------------------------------------------------------

def test_grain_equals_memory_on_digits():
  cfg = data_config('digits', size=16)
  digits = datasets.load_train_data(cfg)  # embedded: arrays, read by grain as they are
  assert isinstance(digits, arrays.ArrayDataset) and len(digits) == 1500
  memory = arrays.BatchSource(digits, 64, seed=3, random_flip=True)
  grain = grain_source(digits, batch=64, seed=3)
  # 1500 / 64: epoch 1 starts inside step 23; 50 is in epoch 2; then back (a restart).
  for step in [0, 1, 2, 23, 24, 50, 5]:
    assert_same_batch(grain.batch(step), memory.batch(step))
  grain.close()


def test_folder_grain_equals_folder_memory(folder):
  cfg = data_config('folder:' + folder, labels_from_subfolders=True)
  records = datasets.load_train_data(cfg)
  assert isinstance(records, grain_records.RecordDataset)
  in_memory = datasets.load_dataset(cfg, 'train')  # decoded whole by the same preprocessing
  assert in_memory.images.shape == (21, 8, 8, 3) and records.image_shape == (8, 8, 3)
  memory = arrays.BatchSource(in_memory, 8, seed=1, random_flip=True)
  grain = grain_source(records, seed=1)
  for step in range(6):  # 48 examples: three epochs of 21
    assert_same_batch(grain.batch(step), memory.batch(step))
  grain.close()


# --- resume and processes -------------------------------------------------------------------

def test_resume_reads_exactly_the_uninterrupted_batches(folder):
  records = datasets.load_train_data(data_config('folder:' + folder))
  whole = grain_source(records)
  uninterrupted = [whole.batch(step) for step in range(8)]
  resumed = grain_source(records)  # a new run that starts at step 5
  for step in range(5, 8):
    assert_same_batch(resumed.batch(step), uninterrupted[step])
  for source in (whole, resumed):
    source.close()


def test_two_processes_read_disjoint_slices_whose_union_is_the_global_batch(folder):
  records = datasets.load_train_data(data_config('folder:' + folder))
  whole = grain_source(records)
  parts = [grain_source(records, process_index=p, process_count=2) for p in range(2)]
  resumed = [grain_source(records, process_index=p, process_count=2) for p in range(2)]
  for step in range(5):
    full = whole.batch(step)
    halves = [part.batch(step) for part in parts]
    for key in full:
      np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), full[key])
    assert not set(halves[0]['index']) & set(halves[1]['index'])  # disjoint positions
    a, b = (set(part.indices(step).tolist()) for part in parts)
    if step not in (2,):  # step 2 holds positions 16..23, across the 21-image epoch end
      assert not a & b
    if step >= 3:  # two processes resumed at step 3 read what the uninterrupted ones did
      for p in range(2):
        assert_same_batch(resumed[p].batch(step), halves[p])
  for source in [whole, *parts, *resumed]:
    source.close()


def test_worker_processes_give_the_same_batches(folder):
  records = datasets.load_train_data(data_config('folder:' + folder))
  threads = grain_source(records)
  workers = grain_source(records, workers=2)
  for step in [4, 5, 6, 7]:  # a resumed run, served by two worker processes in turn
    assert_same_batch(workers.batch(step), threads.batch(step))
  workers.close()
  threads.close()


# --- preprocessing --------------------------------------------------------------------------

def test_area_resize_is_the_block_mean_and_the_crop_is_centred():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
  out = grain_records.Preprocess(4, 3, resize='area', crop='center')(image)
  blocks = image.astype(np.float64).reshape(4, 2, 6, 2, 3).mean(axis=(1, 3))  # (4, 6, 3)
  expected = blocks[:, 1:5] / 127.5 - 1.0  # the centred 4 of 6 columns
  # Pillow resizes rows, then columns, rounding each pass to uint8: within one level.
  np.testing.assert_allclose(out, expected, atol=1.01 / 127.5)
  assert out.dtype == np.float32 and out.shape == (4, 4, 3)


def test_bilinear_keeps_a_constant_image_and_skips_resizing_at_size():
  constant = np.full((20, 30, 3), 200, np.uint8)
  out = grain_records.Preprocess(8, 3)(constant)
  np.testing.assert_allclose(out, 200 / 127.5 - 1.0, atol=1e-6)
  image = np.random.default_rng(1).integers(0, 256, (8, 8, 1), dtype=np.uint8)
  np.testing.assert_allclose(grain_records.Preprocess(8, 1)(image),
                             image / 127.5 - 1.0, atol=1e-6)
  grey = grain_records.Preprocess(8, 1)(np.full((8, 8, 3), 50, np.uint8))  # RGB -> grey
  assert grey.shape == (8, 8, 1)


def test_random_crops_are_seeded_per_step_and_position(folder):
  wide = np.tile(np.arange(16, dtype=np.uint8)[None, :, None], (4, 1, 3))  # column = value
  pre = grain_records.Preprocess(4, 3, crop='random')
  lefts = {int(pre(wide, np.random.default_rng([0, s]))[0, 0, 0] * 127.5 + 127.5 + 0.5)
           for s in range(20)}
  assert len(lefts) > 3 and lefts <= set(range(13))
  cfg = data_config('folder:' + folder, crop='random')
  records = datasets.load_train_data(cfg)
  a, b = grain_source(records), grain_source(records)
  assert_same_batch(a.batch(3), b.batch(3))
  other = grain_source(records, seed=5)
  assert not np.array_equal(other.batch(3)['image'], a.batch(3)['image'])
  for source in (a, b, other):
    source.close()
  with pytest.raises(UserError, match="crop='random' needs data.loader='grain'"):
    datasets.load_train_data(data_config('folder:' + folder, crop='random', loader='memory'))


def test_labels_from_subfolders(folder):
  records = datasets.load_train_data(data_config('folder:' + folder, labels_from_subfolders=True))
  assert records.num_classes == 3
  paths, labels = records.records.paths, records.records.labels
  assert [p.split(os.sep)[0] for p in paths] == [('cat', 'dog', 'emu')[l] for l in labels]
  unlabelled = datasets.load_train_data(data_config('folder:' + folder))
  assert unlabelled.num_classes == 0 and not unlabelled.records.labels.any()


def test_auto_loader_says_which_and_why(folder, capsys):
  small = data_config('folder:' + folder, loader='auto')
  assert isinstance(datasets.load_train_data(small), arrays.ArrayDataset)
  big = data_config('folder:' + folder, loader='auto', max_memory_bytes=1000)
  assert isinstance(datasets.load_train_data(big), grain_records.RecordDataset)
  out = capsys.readouterr().out
  assert 'data: memory loader' in out and 'data: grain loader' in out
  assert '21 images' in out
  cropped = data_config('folder:' + folder, loader='auto', crop='random')
  assert isinstance(datasets.load_train_data(cropped), grain_records.RecordDataset)


def test_hidden_folders_and_other_files_are_ignored(tmp_path):
  write_folder(str(tmp_path), classes=('a',), per_class=3)
  os.makedirs(tmp_path / '.ipynb_checkpoints')
  Image.new('RGB', (8, 8)).save(tmp_path / '.ipynb_checkpoints' / 'copy.png')
  (tmp_path / 'a' / 'notes.txt').write_text('not an image')
  paths, _, _ = grain_records.list_folder(str(tmp_path), labels_from_subfolders=False)
  assert paths == [os.path.join('a', f'0_{i}.{"jpg" if i % 2 else "png"}') for i in range(3)]


# --- tfds (ArrayRecord via tfds.data_source, mocked) ----------------------------------------

def test_tfds_array_record_source_under_mock_data():
  import tensorflow_datasets as tfds
  cfg = data_config('cifar10', size=16)
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    records = datasets.load_train_data(cfg)
  assert isinstance(records, grain_records.RecordDataset)
  assert len(records) == 40 and records.num_classes == 10 and records.image_shape == (16, 16, 3)
  whole = grain_source(records)
  batches = [whole.batch(step) for step in range(6)]
  assert batches[0]['image'].shape == (8, 16, 16, 3)
  assert -1.0 <= batches[0]['image'].min() and batches[0]['image'].max() <= 1.0
  resumed = grain_source(records)
  for step in (4, 5):
    assert_same_batch(resumed.batch(step), batches[step])
  # The images are the records' images: a 32x32 record resized to 16x16.
  index = int(whole.indices(0)[0])
  expected = records.preprocess(records.records[index]['image'])
  image = batches[0]['image'][0]
  flipped = arrays.batch_flips(0, 0, 8, 0, 8)[0]
  np.testing.assert_array_equal(image, expected[:, ::-1] if flipped else expected)
  for source in (whole, resumed):
    source.close()


# --- bad input ------------------------------------------------------------------------------

def test_missing_folder(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    datasets.load_train_data(data_config(f'folder:{tmp_path}/nope'))


def test_folder_without_images(tmp_path):
  (tmp_path / 'notes.txt').write_text('no images here')
  with pytest.raises(UserError, match='holds no images'):
    datasets.load_train_data(data_config(f'folder:{tmp_path}'))


def test_image_outside_class_subfolders(tmp_path):
  write_folder(str(tmp_path), classes=('a',), per_class=2)
  Image.new('RGB', (8, 8)).save(tmp_path / 'loose.png')
  with pytest.raises(UserError, match='loose.png is not in a class subfolder'):
    datasets.load_train_data(data_config(f'folder:{tmp_path}', labels_from_subfolders=True))


def test_folder_has_one_split(folder):
  with pytest.raises(UserError, match="one split, 'train'"):
    datasets.load_dataset(data_config('folder:' + folder), 'test')


def test_unreadable_image_fails_or_is_skipped_with_the_file_named(tmp_path, capsys):
  root = write_folder(str(tmp_path), classes=('a',), per_class=6)
  bad = os.path.join(root, 'a', '0_3.jpg')
  with open(bad, 'wb') as f:
    f.write(b'not a jpeg')
  failing = datasets.load_train_data(data_config(f'folder:{root}'))
  source = grain_source(failing, batch=6, flip=False)
  with pytest.raises(UserError, match='unreadable image .*0_3.jpg.*on_bad_image'):
    source.batch(0)
  source.close()
  with pytest.raises(UserError, match='unreadable image .*0_3.jpg'):
    datasets.load_dataset(data_config(f'folder:{root}'), 'train')  # the memory loader too
  skipping = datasets.load_train_data(data_config(f'folder:{root}', on_bad_image='skip'))
  source = grain_source(skipping, batch=6, flip=False, on_bad='skip')
  batch = source.batch(0)  # one epoch: the bad record replaced by the next file, 0_4.png
  assert batch['image'].shape == (6, 8, 8, 3)
  index = {p: i for i, p in enumerate(skipping.records.paths)}
  replaced = np.flatnonzero(source.indices(0) == index[os.path.join('a', '0_3.jpg')])[0]
  np.testing.assert_array_equal(batch['image'][replaced],
                                skipping.preprocess(skipping.records[index[os.path.join(
                                    'a', '0_4.png')]]['image']))
  assert 'skipping unreadable image' in capsys.readouterr().err
  source.close()
  in_memory = datasets.load_dataset(data_config(f'folder:{root}', on_bad_image='skip'), 'train')
  assert len(in_memory) == 5  # the memory loader leaves it out


def test_tfds_not_prepared_as_array_record(tmp_path):
  with pytest.raises(UserError) as e:
    datasets.load_train_data(data_config('cifar10', data_dir=str(tmp_path)))
  message = str(e.value)
  assert '\n' not in message
  assert f'tfds build cifar10 --file_format=array_record --data_dir={tmp_path}' in message


def test_bad_loader_options():
  with pytest.raises(UserError, match='data.loader'):
    datasets.load_train_data(data_config('digits', loader='disk'))
  with pytest.raises(UserError, match='on_bad_image'):
    grain_source(datasets.load_train_data(data_config('digits')), on_bad='ignore')
  with pytest.raises(UserError, match='data.resize'):
    grain_records.folder_dataset('/nonexistent', data_config('folder:x', resize='cubic'))


# --- end to end: configs/ddpm_folder.py through launch.py -----------------------------------

TINY_FOLDER_DDPM = [
    '--config=configs/ddpm_folder.py',
    '--config.data.image_size=8',
    '--config.data.num_workers=1',
    '--config.model.ch=8',
    '--config.model.ch_mult=(1,2)',
    '--config.model.attn_resolutions=(4,)',
    '--config.model.num_groups=4',
    '--config.model.num_res_blocks=1',
    '--config.diffusion.num_timesteps=20',
    '--config.sampling.num_steps=5',
    '--config.sampling.num_samples=8',
    '--config.training.batch_size=8',
    '--config.training.log_every=1',
    '--config.training.sample_every=0',  # the sampler's compile is the other tests' business
    '--config.training.async_checkpoints=False',
    '--config.optim.warmup_steps=1',
]


def test_ddpm_folder_config_trains_and_resumes_exactly(folder, tmp_path):
  """launch.py on a generated folder; a run stopped at step 2 and resumed (in-process
  threads) logs bitwise the losses of an uninterrupted run (one worker process)."""
  from tests.conftest import losses_by_step, run_launch
  common = [*TINY_FOLDER_DDPM, f'--config.data.dataset=folder:{folder}',
            '--config.training.checkpoint_every=2', '--config.training.num_steps=4']
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  proc = run_launch([*common, f'--workdir={straight}'])
  assert 'data: reading image folder' in proc.stdout and '1 worker process' in proc.stdout
  run_launch([*common, f'--workdir={resumed}', '--config.data.num_workers=0',
              '--config.training.num_steps=2'])
  proc = run_launch([*common, f'--workdir={resumed}', '--config.data.num_workers=0'])
  assert 'resuming at step 2' in proc.stdout
  want, got = losses_by_step(straight), losses_by_step(resumed)
  assert sorted(want) == sorted(got) == [1, 2, 3, 4]
  for step in (3, 4):
    assert got[step] == want[step], step  # same batches, same keys


def test_launch_names_a_missing_folder_in_one_line(tmp_path):
  from tests.conftest import assert_one_line_error, run_launch
  proc = run_launch([*TINY_FOLDER_DDPM, f'--config.data.dataset=folder:{tmp_path}/none',
                     f'--workdir={tmp_path}/run'], check=False)
  assert_one_line_error(proc, f'{tmp_path}/none', 'does not exist')
