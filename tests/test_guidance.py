"""Class conditioning and classifier-free guidance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.core import parallel
from gen_jax.diffusion import guidance
from gen_jax.diffusion import losses
from gen_jax.diffusion import samplers
from gen_jax.diffusion import schedules

NULL = 10


def stub(x, t, y):
  """Known outputs: conditional 0.1 x + 0.01 y, unconditional (y = NULL) -0.2 x."""
  y = y.astype(x.dtype)[:, None, None, None]
  cond = 0.1 * x + 0.01 * y
  return jnp.where(y == NULL, -0.2 * x, cond)


def test_guided_output_matches_the_formula():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 2, 2, 1))
  t = jnp.arange(6)
  y = jnp.array([0, 1, 2, 3, 4, 5])
  for w in (0.0, 1.0, 3.0):
    got = guidance.guided(stub, x, t, y, NULL, w)
    want = (1 + w) * (0.1 * x + 0.01 * y[:, None, None, None]) - w * (-0.2 * x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_guidance_zero_reproduces_conditional_sampling_exactly():
  sched = schedules.make_schedule('linear', 30, 1e-3, 0.1)
  y = jnp.array([1, 2, 3, 4])
  rng = jax.random.PRNGKey(2)
  plain = samplers.ddim_sample(lambda x, t: stub(x, t, y), sched, (4, 2, 2, 1), rng, 10)
  guided = samplers.ddim_sample(lambda x, t: guidance.guided(stub, x, t, y, NULL, 0.0),
                                sched, (4, 2, 2, 1), rng, 10)
  np.testing.assert_array_equal(guided, plain)
  stronger = samplers.ddim_sample(lambda x, t: guidance.guided(stub, x, t, y, NULL, 3.0),
                                  sched, (4, 2, 2, 1), rng, 10)
  assert not np.allclose(stronger, plain)


def test_guidance_calls_the_network_once_per_step_on_a_doubled_batch():
  shapes = []

  def recording(x, t, y):
    shapes.append(x.shape)
    return stub(x, t, y)

  guidance.guided(recording, jnp.zeros((3, 2, 2, 1)), jnp.zeros((3,), jnp.int32),
                  jnp.zeros((3,), jnp.int32), NULL, 2.0)
  assert shapes == [(6, 2, 2, 1)]


def test_label_dropout_rate_matches_the_config():
  keys = parallel.per_example_keys(jax.random.PRNGKey(0), jnp.arange(20000))
  labels = jnp.full((20000,), 3)
  dropped = guidance.drop_labels(labels, keys, 0.1, NULL)
  rate = float(jnp.mean(dropped == NULL))
  # Binomial(20000, 0.1): std 0.0021; 4 std.
  assert rate == pytest.approx(0.1, abs=0.0085)
  assert set(np.unique(dropped)) == {3, NULL}


def test_null_class_never_leaks_without_dropout():
  keys = parallel.per_example_keys(jax.random.PRNGKey(0), jnp.arange(5000))
  labels = jnp.arange(5000) % 10
  np.testing.assert_array_equal(guidance.drop_labels(labels, keys, 0.0, NULL), labels)


def test_loss_feeds_dropped_labels_to_the_network():
  seen = []

  def model_fn(params, x_t, t, batch, rng):
    seen.append(batch['label'])
    return jnp.zeros_like(x_t)

  sched = schedules.make_schedule('linear', 10, 1e-3, 0.1)
  batch = {'image': jnp.zeros((4000, 1, 1, 1)), 'label': jnp.zeros((4000,), jnp.int32),
           'index': jnp.arange(4000)}
  losses.make_diffusion_loss(model_fn, sched, 'eps', label_drop_prob=0.5,
                             null_label=NULL)(None, batch, jax.random.PRNGKey(1))
  assert float(jnp.mean(seen[0] == NULL)) == pytest.approx(0.5, abs=0.05)
  seen.clear()
  losses.make_diffusion_loss(model_fn, sched, 'eps')(None, batch, jax.random.PRNGKey(1))
  assert not bool(jnp.any(seen[0] == NULL))


def test_balanced_labels_make_one_row_per_class():
  np.testing.assert_array_equal(guidance.balanced_labels(20, 10), np.repeat(np.arange(10), 2))
  np.testing.assert_array_equal(guidance.balanced_labels(12, 10)[:3], [0, 1, 2])


def test_conditional_digits_train_and_sample_one_class(tmp_path, tiny_ddpm):
  import os  # pylint: disable=g-import-not-at-top
  from tests.conftest import run_launch  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'cond')
  cond = [*tiny_ddpm, f'--workdir={workdir}', '--config.diffusion.class_conditional=True',
          '--config.sampling.num_samples=20', '--config.sampling.sampler=ddim',
          '--config.sampling.num_steps=4']
  run_launch([*cond, '--config.training.num_steps=2'])
  run_launch([*cond, '--mode=sample', '--config.sampling.guidance_scale=3',
              '--config.sampling.class_label=3'])
  out = np.load(os.path.join(workdir, 'samples', 'sample_step0000002_ddim4_eta0_w3_class3.npz'))
  assert out['images'].shape == (20, 8, 8, 1)
  np.testing.assert_array_equal(out['labels'], np.full(20, 3))
  run_launch([*cond, '--mode=sample'])  # all classes, w = 0: two per class, row by row
  out = np.load(os.path.join(workdir, 'samples', 'sample_step0000002_ddim4_eta0_w0.npz'))
  np.testing.assert_array_equal(out['labels'], np.repeat(np.arange(10), 2))
