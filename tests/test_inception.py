"""The FID Inception-v3 port: its parameter tree against pytorch-fid's, weight reading without
torch, one-line errors, and preprocessing against torch's resize convention (no torch needed).

The outputs were compared once against pytorch-fid itself with random weights (max abs
difference ~1e-4 on pool3 features of magnitude ~100); that check needs torch and is not here.
"""

import json
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.evaluation import inception_weights
from gen_jax.interop import torch_files
from gen_jax.models import inception
from gen_jax.platform import viz
from gen_jax.platform.errors import UserError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


@pytest.fixture(scope='module')
def pytorch_fid_listing():
  """pytorch-fid's fid_inception_v3().state_dict() keys and shapes, dumped once from torch."""
  with open(os.path.join(DATA, 'pytorch_fid_inception_state_dict.json')) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def random_state_dict(pytorch_fid_listing):
  """Random weights in PyTorch names and layouts that keep activations O(1) (He-normal convs)."""
  rng = np.random.default_rng(0)
  state_dict = {}
  for key, shape in pytorch_fid_listing['state_dict']:
    if key.endswith('num_batches_tracked'):
      state_dict[key] = np.array(1, np.int64)
    elif key.endswith('running_var') or key.endswith('bn.weight'):
      state_dict[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    elif len(shape) > 1:  # conv and fc weights
      fan_in = int(np.prod(shape[1:]))
      state_dict[key] = (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    else:  # biases and running means
      state_dict[key] = (0.1 * rng.normal(size=shape)).astype(np.float32)
  return state_dict


def test_param_tree_matches_pytorch_fid(pytorch_fid_listing):
  want = {k: tuple(s) for k, s in pytorch_fid_listing['state_dict']
          if not k.endswith('.num_batches_tracked')}
  assert inception_weights.expected_state_dict_shapes() == want
  variables = jax.eval_shape(inception.InceptionV3().init, jax.random.PRNGKey(0),
                             jnp.zeros((1, 299, 299, 3)))
  count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
  assert count(variables['params']) == pytorch_fid_listing['num_parameters'] == 23_850_960
  assert count(variables['batch_stats']) == pytorch_fid_listing['num_buffers']
  for key in want:
    assert inception_weights.torch_key(inception_weights.flax_path(key)[1]) == key


def test_outputs_on_a_batch_of_two(random_state_dict):
  variables = inception_weights.state_dict_to_variables(random_state_dict)
  images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  pool, logits = inception.inception_outputs(variables, jnp.asarray(images))
  assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
  pool, logits = np.asarray(pool, np.float64), np.asarray(logits, np.float64)
  assert np.all(np.isfinite(logits)) and np.all(pool >= 0)  # pool3 averages ReLU outputs
  assert np.std(pool) > 1e-3 and not np.allclose(pool[0], pool[1])
  # The logits are pytorch-fid's fc on pool3: x W^T + b in PyTorch's (out, in) layout.
  np.testing.assert_allclose(
      logits, pool @ random_state_dict['fc.weight'].T + random_state_dict['fc.bias'],
      rtol=1e-4, atol=1e-4)


def test_extractor_scores_is_on_the_unbiased_logits(tmp_path, random_state_dict):
  """The IS probabilities are softmax(pool3 @ W) (original IS code, torch-fidelity's
  'logits_unbiased'), not softmax(pool3 @ W + b); the biased logits stay the model's output."""
  from gen_jax.core import parallel  # pylint: disable=g-import-not-at-top
  from gen_jax.evaluation import feature_extractors  # pylint: disable=g-import-not-at-top
  weights = dict(random_state_dict)
  weights['fc.bias'] = np.linspace(-3, 3, 1008).astype(np.float32)  # a bias that matters
  path = str(tmp_path / 'inception.npz')
  np.savez(path, **weights)
  extractor = feature_extractors.InceptionExtractor(path, parallel.make_mesh(), chunk=2)
  images = np.random.default_rng(4).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  features, probs = extractor(images)
  pool = features.astype(np.float64)
  w = weights['fc.weight'].T.astype(np.float64)  # (2048, 1008)
  softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(
      z - z.max(1, keepdims=True)).sum(1, keepdims=True)
  np.testing.assert_allclose(probs, softmax(pool @ w), rtol=1e-3, atol=1e-7)
  assert np.abs(probs - softmax(pool @ w + weights['fc.bias'])).max() > 1e-2
  variables = inception_weights.load_inception_params(path)
  _, biased = inception.inception_outputs(variables, jnp.asarray(images))
  np.testing.assert_allclose(
      np.asarray(biased) - np.asarray(inception.unbiased_logits(variables, jnp.asarray(pool))),
      np.broadcast_to(weights['fc.bias'], (2, 1008)), atol=1e-3)
  assert extractor.describe()['inception_score_logits'].startswith('pool3 @ W')


def test_npz_round_trip_and_layouts(tmp_path, random_state_dict):
  path = str(tmp_path / 'inception.npz')
  np.savez(path, **random_state_dict)  # num_batches_tracked included: ignored on load
  variables = inception_weights.load_inception_params(path)
  conv = random_state_dict['Mixed_6b.branch7x7_2.conv.weight']  # (O, I, 1, 7)
  np.testing.assert_array_equal(
      variables['params']['Mixed_6b']['branch7x7_2']['conv']['kernel'], conv.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['Mixed_7c']['branch_pool']['bn']['var'],
                                random_state_dict['Mixed_7c.branch_pool.bn.running_var'])
  np.testing.assert_array_equal(variables['params']['fc']['kernel'],
                                random_state_dict['fc.weight'].T)
  back = inception_weights.variables_to_state_dict(variables)
  assert set(back) == {k for k in random_state_dict if not k.endswith('num_batches_tracked')}
  for key, value in back.items():
    np.testing.assert_array_equal(value, random_state_dict[key])


@pytest.mark.parametrize('name', ['torch_save_zip.pth', 'torch_save_legacy.pth'])
def test_reads_torch_save_files_without_torch(name):
  """Fixtures written by torch.save (default zip and legacy formats) from known tensors."""
  sd = torch_files.read_state_dict(os.path.join(DATA, name))
  a = np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5
  expected = {
      'a': a,
      't': a.T,  # non-contiguous strides
      'row': a[1],  # a view at storage offset 3
      'h': np.arange(4, dtype=np.float16) / 4,
      'bf': np.array([1.5, -2.0], jnp.bfloat16),
      'd': np.array([1 / 3]),
      'n': np.array(7, np.int64),  # a 0-d int64, like num_batches_tracked
      'p': np.full((2, 2), -1.25, np.float32),  # an nn.Parameter
  }
  assert list(sd) == list(expected)
  for key, want in expected.items():
    assert sd[key].dtype == want.dtype and sd[key].shape == want.shape, key
    np.testing.assert_array_equal(sd[key], want)


def test_pth_reader_runs_no_code(tmp_path):
  target = tmp_path / 'created_by_the_pickle'

  class Payload:
    def __reduce__(self):
      return (os.makedirs, (str(target),))

  path = str(tmp_path / 'evil.pth')
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', pickle.dumps({'fc.weight': Payload()}, protocol=2))
  with pytest.raises(UserError, match=r'refusing to unpickle posix\.makedirs|os\.makedirs'):
    inception_weights.load_inception_params(path)
  assert not target.exists()


def _one_line(excinfo):
  message = str(excinfo.value)
  assert '\n' not in message
  return message


def test_missing_file_is_a_one_line_user_error(tmp_path):
  path = str(tmp_path / 'pt_inception.pth')
  with pytest.raises(UserError) as excinfo:
    inception_weights.load_inception_params(path)
  message = _one_line(excinfo)
  assert path in message and inception_weights.FID_WEIGHTS_URL in message


def test_wrong_keys_and_shapes_are_one_line_user_errors(tmp_path, random_state_dict):
  bad = dict(random_state_dict)
  bad['Mixed_6c.branch7x7_2.conv.weight'] = np.zeros((160, 160, 7, 1), np.float32)  # 7x1, not 1x7
  bad['fc.weight'] = np.zeros((1000, 2048), np.float32)  # later: only the first is named
  path = str(tmp_path / 'bad.npz')
  np.savez(path, **bad)
  with pytest.raises(UserError) as excinfo:
    inception_weights.load_inception_params(path)
  message = _one_line(excinfo)
  assert "'Mixed_6c.branch7x7_2.conv.weight'" in message and path in message
  assert '(160, 160, 7, 1)' in message and '(160, 160, 1, 7)' in message
  assert 'fc.weight' not in message

  missing = {k: v for k, v in random_state_dict.items() if k != 'Mixed_5b.branch_pool.bn.bias'}
  with pytest.raises(UserError, match=r"'Mixed_5b.branch_pool.bn.bias' is missing.*\(32,\)"):
    inception_weights.state_dict_to_variables(missing)
  extra = dict(random_state_dict, **{'AuxLogits.fc.weight': np.zeros((1000, 768))})
  with pytest.raises(UserError,
                     match=r"unexpected key 'AuxLogits.fc.weight' \(shape \(1000, 768\)\)"):
    inception_weights.state_dict_to_variables(extra)
  garbage = tmp_path / 'garbage.pth'
  garbage.write_bytes(b'not a checkpoint')
  with pytest.raises(UserError, match='not a readable PyTorch state_dict'):
    inception_weights.load_inception_params(str(garbage))


def test_quantize_rounds_as_saved_pngs():
  levels = np.array([0, 10, 10, 127, 254, 255, 255], np.float64)
  offsets = np.array([-0.3, 0.499, 0.501, 0.5, -0.499, 0.3, 40.0])  # in uint8 steps
  x = ((levels + offsets) / 127.5 - 1.0).astype(np.float32).reshape(1, 1, 7, 1)
  q = np.asarray(inception.quantize(jnp.asarray(x)))
  np.testing.assert_array_equal(q.ravel(), [0, 10, 11, 128, 254, 255, 255])
  np.testing.assert_array_equal(q, viz.to_uint8(x))  # what a saved PNG holds
  u = np.array([[[[0], [7], [255]]]], np.uint8)
  np.testing.assert_array_equal(inception.quantize(jnp.asarray(u)), u.astype(np.float32))


def _torch_bilinear_reference(image, size):
  """F.interpolate(bilinear, align_corners=False) written out: half-pixel centres, source
  index clamped at 0 (and the upper neighbour at the last pixel), no antialiasing. Like torch,
  the source coordinate is computed in float32 (in float64 it differs from torch by 3e-5 at
  400 -> 299)."""
  def weights(n_in):  # (size, n_in) interpolation matrix
    f32 = np.float32
    src = (np.arange(size, dtype=f32) + f32(0.5)) * f32(n_in / size) - f32(0.5)
    src = np.maximum(src, f32(0.0)).astype(np.float64)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = np.zeros((size, n_in))
    np.add.at(w, (np.arange(size), i0), 1.0 - (src - i0))
    np.add.at(w, (np.arange(size), i1), src - i0)
    return w
  rows = np.einsum('ih,hwc->iwc', weights(image.shape[0]), image)  # (size, W, C)
  return np.einsum('jw,iwc->ijc', weights(image.shape[1]), rows)  # (size, size, C)


@pytest.mark.parametrize('shape', [(16, 16), (32, 32), (400, 333)])  # up, up, down (no antialias)
def test_resize_follows_pytorch_fid(shape):
  image = np.random.default_rng(2).uniform(size=(*shape, 3))
  got = np.asarray(inception.resize_bilinear(jnp.asarray(image[None], jnp.float32)))[0]
  np.testing.assert_allclose(got, _torch_bilinear_reference(image, 299), atol=1e-5)


def test_preprocess_range_and_grayscale():
  gray = np.random.default_rng(3).uniform(-1, 1, (2, 12, 12, 1)).astype(np.float32)
  out = np.asarray(inception.preprocess(jnp.asarray(gray)))
  assert out.shape == (2, 299, 299, 3) and out.min() >= -1.0 and out.max() <= 1.0
  # Grayscale is RGB with three equal channels. XLA's CPU kernels may round channels and
  # fusions differently (vector lanes, FMA contraction): equal to float32 rounding, not
  # bit for bit (measured: 1.2e-7 at most, in 0.6% of the pixels).
  np.testing.assert_allclose(out, np.asarray(inception.preprocess(jnp.repeat(gray, 3, -1))),
                             rtol=0, atol=1e-6)
  np.testing.assert_allclose(out[..., 0], out[..., 2], rtol=0, atol=1e-6)
  levels = viz.to_uint8(gray)[0, 0, 0, 0]  # a corner pixel keeps its value (border clamping)
  assert out[0, 0, 0, 0] == pytest.approx(2 * levels / 255.0 - 1, abs=1e-6)
