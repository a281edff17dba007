"""The one exception type for mistakes a user can fix (bad config, data, workdir).

`launch.py` prints its message as a single line and exits non-zero, without a traceback.
"""


class UserError(Exception):
  """A problem with the user's input; the message says what is wrong and what to do."""
