"""Bad input ends in one clear line and a non-zero exit, never a traceback."""

import os
import tempfile

import pytest

from tests.conftest import assert_one_line_error, run_launch


def test_unknown_config_key(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--config.training.num_stepz=3'],
                    check=False)
  assert_one_line_error(proc, 'unknown config field num_stepz', 'num_steps')


def test_missing_config_file(tmp_path):
  proc = run_launch(['--config=configs/no_such_config.py', f'--workdir={tmp_path}'], check=False)
  assert_one_line_error(proc, 'cannot load --config', 'no_such_config.py')


@pytest.mark.parametrize('body,needles', [
    ('def get_config(:\n  pass\n', ['SyntaxError at {path}:1']),
    ('from configs import ddpm\n\ndef get_config():\n  config = ddpm.get_config()\n'
     '  config.model.ch = undefined_width\n  return config\n',
     ["NameError at {path}:5", "name 'undefined_width' is not defined"]),
    ('import no_such_module_of_gen_jax\n', ['ModuleNotFoundError at {path}:1']),
    ('x = 1\n', ['defines no get_config()']),
])
@pytest.mark.parametrize('override', [[], ['--config.model.ch=16']])
def test_config_file_that_does_not_load(tmp_path, body, needles, override):
  """Issue 13: a SyntaxError / NameError in the file was a traceback (with or without an
  override); now one line naming the file, the line and the error."""
  path = tmp_path / 'my_config.py'
  path.write_text(body)
  proc = run_launch([f'--config={path}', f'--workdir={tmp_path}/run', *override], check=False)
  assert_one_line_error(proc, f'cannot load --config={path}',
                        *[n.format(path=path) for n in needles])
  assert proc.returncode == 2


def test_missing_config_file_with_an_override(tmp_path):
  """Issue 13: an OSError traceback before."""
  proc = run_launch(['--config=configs/no_such_config.py', f'--workdir={tmp_path}',
                     '--config.training.num_steps=3'], check=False)
  assert_one_line_error(proc, 'cannot load --config=configs/no_such_config.py', 'no such file')
  assert proc.returncode == 2


def test_indivisible_batch(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--config.training.batch_size=12'],
                    devices=8, check=False)
  assert_one_line_error(proc, 'training.batch_size=12', '8 devices')


def test_unknown_dataset(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--config.data.dataset=no_such_set'],
                    check=False)
  assert_one_line_error(proc, "unknown dataset 'no_such_set'")


def test_unprepared_tfds_dataset_fails_at_once(tmp_path, tiny_ddpm):
  # cifar10: mnist and fashion_mnist have a second route, their IDX files (test_idx_datasets).
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}/run', '--config.data.dataset=cifar10',
                     f'--config.data.data_dir={tmp_path}/empty'], check=False, timeout=120)
  assert_one_line_error(proc, "'cifar10' is not prepared", 'tfds build cifar10',
                        '--config.data.data_dir')


def test_checkpoint_that_does_not_fit_the_config(tmp_path, tiny_ddpm):
  workdir = f'{tmp_path}/run'
  run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=1'])
  proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=2',
                     '--config.model.ch=12'], check=False)
  assert_one_line_error(proc, 'does not fit this config', 'model.ch 8 -> 12')
  # The checkpoint that was there is untouched.
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', '1'))


def test_sample_without_checkpoint(tmp_path, tiny_ddpm):
  proc = run_launch([*tiny_ddpm, f'--workdir={tmp_path}', '--mode=sample'], check=False)
  assert_one_line_error(proc, 'no checkpoint')


@pytest.mark.parametrize('override,needles', [
    ('--config.diffusion.prediction=score', ['diffusion.prediction']),
    ('--config.sampling.sampler=plms', ['sampling.sampler']),
    ('--config.sampling.sigma_schedule=cosine --config.sampling.sampler=heun',
     ['sampling.sigma_schedule']),
    ('--config.model.num_groups=3', ['model.num_groups']),
    ('--config.model.dtype=float16', ['model.dtype']),
    ('--config.data.image_size=7', ['data.image_size']),
    ('--config.training.log_every=0', ['training.log_every must be >= 1']),
    # Issue 13: each was a ZeroDivisionError / TypeError traceback, or () trained silently.
    ('--config.model.ch=0', ['model.ch must be an integer >= 4, not 0']),
    ('--config.model.num_groups=0', ['model.num_groups must be an integer >= 1, not 0']),
    ('--config.model.ch_mult=(1,0)', ['model.ch_mult must be a tuple of one or more integers',
                                      'not (1, 0)']),
    ('--config.model.ch_mult=(1,a)', ['model.ch_mult', 'not (1,a)']),
    ('--config.model.ch_mult=()', ['model.ch_mult', 'not ()']),
    ('--config.model.attn_resolutions=(2,)', ['model.attn_resolutions=(2,)', '[8, 4]']),
    ('--config.model.ch=10', ['model.num_groups=4 must divide', '[10, 20]']),
])
def test_bad_values(tmp_path, tiny_ddpm, override, needles):
  overrides = override.split()
  # ml_collections concatenates a tuple field given twice: drop the tiny model's own value.
  fields = {o.split('=')[0] for o in overrides}
  base = [a for a in tiny_ddpm if a.split('=')[0] not in fields]
  proc = run_launch([*base, f'--workdir={tmp_path}/run', *overrides], check=False)
  assert_one_line_error(proc, *needles)
  assert proc.returncode == 2
  assert not os.path.exists(f'{tmp_path}/run')  # refused before anything was written


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, tiny_ddpm):
  workdir = f'{tmp_path}/run'
  run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=2'])
  proc = run_launch([*tiny_ddpm, f'--workdir={workdir}', '--config.training.num_steps=6',
                     '--config.optim.lr=1e30'], check=False)
  assert_one_line_error(proc, 'non-finite', 'last finite state', 'lower optim.lr (now 1e+30)',
                        'a smaller optim.grad_clip (now 1)')
  assert 'None' not in proc.stderr
  # The last finite state is saved (the steps before the NaN are kept), the older ones too.
  kept = int(proc.stderr.split('saved as checkpoint ')[1].split('.')[0])
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
  assert saved[0] == 2 and saved[-1] == kept and 2 <= kept < 6


# --- the workdir: refused before any computation --------------------------------
def _can_write(directory) -> bool:
  try:
    fd, name = tempfile.mkstemp(dir=directory)
  except OSError:
    return False
  os.close(fd)
  os.remove(name)
  return True


@pytest.fixture
def read_only_dir(tmp_path):
  """A directory no file can be created in: mode 0o555, or for root (whom permission bits
  do not stop) a read-only filesystem."""
  directory = tmp_path / 'read_only'
  directory.mkdir()
  directory.chmod(0o555)
  target = str(directory)
  if _can_write(target):  # root
    target = '/sys'  # sysfs: read-only even for root
    if not os.path.isdir(target) or _can_write(target):
      pytest.skip('no read-only directory to test with')
  yield target
  directory.chmod(0o755)


@pytest.mark.parametrize('mode', ['train', 'sample', 'eval'])
def test_workdir_that_is_a_file(tmp_path, tiny_ddpm, mode):
  path = tmp_path / 'a_file'
  path.write_text('not a workdir')
  proc = run_launch([*tiny_ddpm, f'--workdir={path}', f'--mode={mode}'], check=False)
  assert_one_line_error(proc, f'--workdir={path} is a file, not a directory')
  assert proc.returncode == 2 and path.read_text() == 'not a workdir'
  proc = run_launch([*tiny_ddpm, f'--workdir={path}/run', f'--mode={mode}'], check=False)
  assert_one_line_error(proc, f'--workdir={path}/run cannot be a directory', f'{path} is a file')


@pytest.mark.parametrize('mode', ['train', 'sample'])
def test_read_only_workdir(read_only_dir, tiny_ddpm, mode):
  proc = run_launch([*tiny_ddpm, f'--workdir={read_only_dir}', f'--mode={mode}'], check=False)
  assert_one_line_error(proc, f'cannot write to --workdir={read_only_dir}')
  assert proc.returncode == 2
  # A new workdir inside it cannot be created either.
  proc = run_launch([*tiny_ddpm, f'--workdir={read_only_dir}/run'], check=False)
  assert_one_line_error(proc, f'cannot write to {read_only_dir} (to create --workdir=')
