"""Renders the config reference of docs/configuration.md from the schemas.

    python tools/config_reference.py          # rewrites the reference in docs/configuration.md
    python tools/config_reference.py --check  # exit 1 when the file's reference is stale

One table per schema: the shared blocks (experiments/schema.py), then each family's
(experiments/<family>/schema.py), with every field its `get_schema()` sets, the default as
written there and the field's one-line comment: the comment on the assignment's line, else
the comment lines just above it. The reference lies between `BEGIN` and `END` in
docs/configuration.md; tests/test_config_reference.py fails when it differs from this
rendering or when a field has no comment.
"""

import argparse
import ast
import dataclasses
import importlib
import io
import os
import sys
import tokenize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

DOC = os.path.join(REPO, 'docs', 'configuration.md')
BEGIN, END = '<!-- config-reference:begin -->', '<!-- config-reference:end -->'
SHARED = 'experiments.schema'
# Families in the order the reference lists them.
ORDER = ('diffusion', 'vae', 'gan', 'ldm', 'classifier')


@dataclasses.dataclass(frozen=True)
class Field:
  """One field a schema's `get_schema()` sets (or removes).

  Attributes:
    name: the dotted field, e.g. 'data.image_size'.
    default: the value's source text ('' for a removed field).
    comment: its one-line comment ('' when it has none).
    removed: whether the schema deletes it (`del config.optim.lr`).
  """
  name: str
  default: str
  comment: str
  removed: bool = False


def _dotted(node) -> str | None:
  """'a.b' for the target `config.a.b`, or None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and node.id == 'config' and parts:
    return '.'.join(reversed(parts))
  return None


def _comments(source: str) -> dict[int, str]:
  """{line: comment text} of every comment in `source` (without '#')."""
  out = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      out[tok.start[0]] = tok.string.lstrip('#').strip()
  return out


def _comment_of(node, lines: list[str], comments: dict[int, str]) -> str:
  """The comment on `node`'s last line, else the comment lines just above it."""
  if node.end_lineno in comments and lines[node.end_lineno - 1].split('#')[0].strip():
    return comments[node.end_lineno]
  above, line = [], node.lineno - 1
  while line >= 1 and lines[line - 1].strip().startswith('#'):
    above.insert(0, comments[line])
    line -= 1
  return ' '.join(above)


def _is_block(value) -> bool:
  """`ml_collections.ConfigDict()` with no arguments: a block, not a field."""
  return (isinstance(value, ast.Call) and not value.args and not value.keywords
          and getattr(value.func, 'attr', getattr(value.func, 'id', '')) == 'ConfigDict')


def schema_fields(module_name: str) -> tuple[list[Field], str | None]:
  """(fields, parent) of the schema module `module_name`.

  Returns:
    The fields its `get_schema()` sets in source order (blocks left out: an argument-less
    `ConfigDict()` that later assignments fill), and the schema module it starts from
    (`config = X.get_schema()`), or None.
  """
  module = importlib.import_module(module_name)
  with open(module.__file__) as f:
    source = f.read()
  lines, comments = source.splitlines(), _comments(source)
  tree = ast.parse(source)
  aliases = {}
  for node in tree.body:
    if isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        aliases[a.asname or a.name] = f'{node.module}.{a.name}'
  func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'get_schema')
  parent, assigned = None, []
  for node in func.body:
    if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
        and isinstance(node.value.func.value, ast.Name)):
      parent = aliases.get(node.value.func.value.id)
    elif isinstance(node, ast.Assign) and _dotted(node.targets[0]):
      assigned.append((_dotted(node.targets[0]), node))
    elif isinstance(node, ast.Delete) and _dotted(node.targets[0]):
      assigned.append((_dotted(node.targets[0]), node))
  names = [name for name, _ in assigned]
  fields = []
  for name, node in assigned:
    comment = _comment_of(node, lines, comments)
    if isinstance(node, ast.Delete):
      fields.append(Field(name, '', comment, removed=True))
      continue
    if _is_block(node.value) and any(n.startswith(name + '.') for n in names):
      continue
    default = ast.get_source_segment(source, node.value)
    fields.append(Field(name, ' '.join(default.split()), comment))
  return fields, parent


def _cell(text: str) -> str:
  return text.replace('|', '\\|')


def _table(fields: list[Field]) -> list[str]:
  rows = ['| field | default | meaning |', '| --- | --- | --- |']
  for f in fields:
    default = '(removed)' if f.removed else f'`{_cell(f.default)}`'
    rows.append(f'| `{f.name}` | {default} | {_cell(f.comment)} |')
  return rows


def _path(module_name: str) -> str:
  return module_name.replace('.', '/') + '.py'


def render() -> str:
  """The reference: a table for the shared blocks and one for each family's schema."""
  import experiments  # pylint: disable=g-import-not-at-top
  names = [n for n in ORDER if n in experiments.FAMILIES]
  names += [n for n in experiments.FAMILIES if n not in names]
  out = ['Generated from the schemas by `python tools/config_reference.py` (do not edit '
         'by hand: change the schema\'s comment and rerun it; '
         'tests/test_config_reference.py fails when this is stale).', '',
         f'### Shared blocks (`{_path(SHARED)}`)', '']
  fields, _ = schema_fields(SHARED)
  out += _table(fields)
  for name in names:
    module_name = f'experiments.{name}.schema'
    fields, parent = schema_fields(module_name)
    start = ('the shared blocks' if parent in (None, SHARED)
             else f'the {parent.split(".")[1]} schema (`{_path(parent)}`)')
    out += ['', f'### {name} (`{_path(module_name)}`)', '',
            f'Starts from {start}; sets or overrides:', '']
    out += _table(fields)
  return '\n'.join(out) + '\n'


def between_markers(text: str) -> str:
  """The text between BEGIN's line and END."""
  start = text.index(BEGIN) + len(BEGIN) + 1
  return text[start:text.index(END)]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true',
                      help='only check that docs/configuration.md is up to date')
  args = parser.parse_args(argv)
  with open(DOC) as f:
    text = f.read()
  reference = render()
  if args.check:
    if between_markers(text) != reference:
      print(f'{DOC} is stale: run python tools/config_reference.py', file=sys.stderr)
      return 1
    return 0
  start = text.index(BEGIN) + len(BEGIN) + 1
  with open(DOC, 'w') as f:
    f.write(text[:start] + reference + text[text.index(END):])
  return 0


if __name__ == '__main__':
  sys.exit(main())
