"""How gen_jax reaches tfds: TensorFlow (the `tfds` extra), imported with a one-line
error naming the extra, and the error for a dataset tfds has not prepared."""

from gen_jax.platform.errors import UserError


class TfdsNotPrepared(UserError):
  """tfds knows the dataset but has no copy of it prepared (for this loader)."""


TFDS_EXTRA_HINT = ('pip install -e ".[tfds]" adds it (tensorflow-cpu on Linux x86-64, '
                   'tensorflow elsewhere)')


def import_tensorflow(what: str):
  """TensorFlow, which tfds needs to decode most datasets; one line naming the extra when
  this install has none (the base install does not: it has no wheels for every platform).

  Args:
    what: what needs it, for the message.
  Returns:
    The tensorflow module.
  """
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(
        f'{what} is decoded through TensorFlow, which this install does not have: '
        f'{TFDS_EXTRA_HINT}; or prepare it as ArrayRecord (tfds build --file_format='
        f'array_record) and read it with data.loader=\'grain\', which needs no TensorFlow.'
    ) from None
  return tf
