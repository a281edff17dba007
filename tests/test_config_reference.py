"""docs/configuration.md's reference is the one tools/config_reference.py renders from the
schemas, and every field of every schema has its one-line comment."""

import importlib
import os
import sys

import pytest

import experiments
from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'tools'))
import config_reference  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_the_reference_in_the_docs_is_the_generated_one():
  with open(config_reference.DOC) as f:
    text = f.read()
  assert config_reference.between_markers(text) == config_reference.render(), (
      'docs/configuration.md is stale: run python tools/config_reference.py')


def _leaves(config, prefix=''):
  for key, value in config.items():
    if hasattr(value, 'items') and len(value):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}'


def _documented(module_name: str) -> dict[str, str]:
  """{field: comment} of a schema and the schemas it starts from."""
  fields, parent = config_reference.schema_fields(module_name)
  documented = _documented(parent) if parent else {}
  for f in fields:
    if f.removed:
      documented.pop(f.name, None)
    else:
      documented[f.name] = f.comment
  return documented


@pytest.mark.parametrize('name', experiments.FAMILIES)
def test_every_field_of_every_schema_has_a_comment(name):
  module_name = f'experiments.{name}.schema'
  documented = _documented(module_name)
  for field, comment in documented.items():
    assert comment, f'{field} of {module_name} (or the schema it starts from) has no comment'
  config = importlib.import_module(module_name).get_schema()
  for leaf in _leaves(config):
    parts = leaf.split('.')
    # A dict-valued field (eval.paper, sweep.vmap) is documented as one field.
    assert any('.'.join(parts[:i]) in documented for i in range(1, len(parts) + 1)), (
        f'{leaf} of {module_name} is set nowhere the reference reads')


def test_every_schema_field_is_in_the_reference():
  text = config_reference.render()
  for name in experiments.FAMILIES:
    fields, _ = config_reference.schema_fields(f'experiments.{name}.schema')
    for f in fields:
      assert f'| `{f.name}` |' in text, (name, f.name)
