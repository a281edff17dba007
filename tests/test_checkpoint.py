"""Checkpoints written before the train state gained a field still restore."""

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.platform import checkpoint
from gen_jax.platform.errors import UserError


@flax.struct.dataclass
class _OldState:
  step: jax.Array
  params: dict


@flax.struct.dataclass
class _NewState:
  step: jax.Array
  params: dict
  extra: dict = flax.struct.field(default_factory=dict)  # added later, empty in old runs


def _abstract(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def test_old_checkpoint_restores_into_a_state_with_a_new_empty_field(tmp_path):
  old = _OldState(step=jnp.array(7), params={'w': jnp.arange(6.0).reshape(2, 3)})
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(7, old)
  ckpt.wait()
  new = _NewState(step=jnp.array(0), params={'w': jnp.zeros((2, 3))})
  restored = ckpt.restore(_abstract(new))
  ckpt.close()
  assert isinstance(restored, _NewState) and restored.extra == {}
  assert int(restored.step) == 7
  np.testing.assert_array_equal(restored.params['w'], old.params['w'])


def test_a_new_field_with_arrays_is_still_a_one_line_mismatch(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(1, _OldState(step=jnp.array(1), params={'w': jnp.zeros(2)}))
  ckpt.wait()
  wanted = _NewState(step=jnp.array(0), params={'w': jnp.zeros(2)}, extra={'b': jnp.zeros(3)})
  with pytest.raises(UserError, match='extra/b is missing there'):
    ckpt.restore(_abstract(wanted))
  ckpt.close()
