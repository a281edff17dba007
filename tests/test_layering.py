"""gen_jax is in layers that import downwards only, with no import circle.

    platform  <-  core  <-  data, models, diffusion, objectives, interop  <-  evaluation

A package may import its own modules and those of the layers below it; packages of one
layer do not import each other. Every import is read with `ast`, function-level ones
included (they run late, but they are dependencies all the same). `experiments` and
launch.py sit above all of gen_jax (tests/test_import_direction.py).
"""

import ast
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# package -> layer (lower is further down).
LAYERS = {
    'platform': 0,
    'core': 1,
    'data': 2, 'models': 2, 'diffusion': 2, 'objectives': 2, 'interop': 2,
    'evaluation': 3,
}


def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


def _imports(path: pathlib.Path, module: str, known: set[str]) -> set[str]:
  """The gen_jax modules `path` imports (anywhere in it), as dotted names in `known`."""
  found = set()
  package = module if path.name == '__init__.py' else module.rsplit('.', 1)[0]
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: from the package, `level` up
        anchor = package.split('.')
        base = '.'.join(anchor[:len(anchor) - node.level + 1] + ([base] if base else []))
      # `from pkg import module` imports the module; `from module import name`, the module.
      names = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in known else base
               for alias in node.names]
    else:
      continue
    for name in names:
      while name and name not in known:  # `from pkg import function`: the module pkg
        name = name.rpartition('.')[0]
      if name and name != module:
        found.add(name)
  return found


def import_graph(root: pathlib.Path) -> dict[str, set[str]]:
  """{gen_jax module: the gen_jax modules it imports} for the tree under `root`."""
  paths = {_module_name(p, root): p for p in sorted((root / 'gen_jax').rglob('*.py'))}
  return {module: _imports(path, module, set(paths)) for module, path in paths.items()}


def _layer(module: str):
  parts = module.split('.')
  return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def layer_problems(root: pathlib.Path) -> list[str]:
  """Upward imports, imports across packages of one layer, modules outside every layer,
  and import circles, of the gen_jax tree under `root`."""
  graph = import_graph(root)
  problems = []
  for module, imported in sorted(graph.items()):
    package = _layer(module)
    if module != 'gen_jax' and package not in LAYERS:
      problems.append(f'{module} is in no layer (put it in one of {sorted(LAYERS)})')
      continue
    for target in sorted(imported):
      target_package = _layer(target)
      if target == 'gen_jax' or package is None or target_package == package:
        continue
      if target_package not in LAYERS or LAYERS[target_package] >= LAYERS[package]:
        problems.append(f'{module} imports {target}: {package} may not import '
                        f'{target_package}')
  problems += [f'import circle among {", ".join(members)}' for members in _circles(graph)]
  return problems


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The sets of modules that import each other, directly or not (Tarjan's strongly
  connected components of more than one module)."""
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for target in sorted(graph.get(node, ())):
      if target not in index:
        visit(target)
        low[node] = min(low[node], low[target])
      elif target in on_stack:
        low[node] = min(low[node], index[target])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        cycles.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return cycles


def test_the_library_imports_downwards_only_and_without_circles():
  assert not layer_problems(ROOT), '\n'.join(layer_problems(ROOT))


def test_every_layer_has_modules():
  graph = import_graph(ROOT)
  assert {_layer(m) for m in graph} - {None} == set(LAYERS)


@pytest.fixture
def planted(tmp_path):
  """A copy of the library to plant bad imports in."""
  shutil.copytree(ROOT / 'gen_jax', tmp_path / 'gen_jax')
  return tmp_path


def _append(path: pathlib.Path, text: str) -> None:
  path.write_text(path.read_text() + text)


def test_a_planted_upward_function_level_import_fails_it(planted):
  _append(planted / 'gen_jax' / 'core' / 'trainer.py',
          '\n\ndef _planted():\n  from gen_jax.evaluation import feature_metrics\n'
          '  return feature_metrics\n')
  problems = layer_problems(planted)
  assert problems == ['gen_jax.core.trainer imports gen_jax.evaluation.feature_metrics: '
                      'core may not import evaluation']


def test_a_planted_import_across_one_layer_fails_it(planted):
  _append(planted / 'gen_jax' / 'models' / 'layers.py', '\nimport gen_jax.diffusion.schedules\n')
  assert layer_problems(planted) == ['gen_jax.models.layers imports '
                                     'gen_jax.diffusion.schedules: models may not import '
                                     'diffusion']


def test_a_planted_circle_fails_it(planted):
  # gen_jax.data.datasets imports gen_jax.data.arrays; the reverse closes a circle.
  _append(planted / 'gen_jax' / 'data' / 'arrays.py',
          '\n\ndef _planted():\n  from gen_jax.data import datasets\n  return datasets\n')
  problems = layer_problems(planted)
  assert len(problems) == 1 and problems[0].startswith('import circle among '), problems
  assert {'gen_jax.data.arrays', 'gen_jax.data.datasets'} <= set(
      problems[0].removeprefix('import circle among ').split(', '))


def test_a_module_outside_every_layer_fails_it(planted):
  (planted / 'gen_jax' / 'helpers.py').write_text('X = 1\n')
  assert layer_problems(planted) == [
      'gen_jax.helpers is in no layer (put it in one of '
      f'{sorted(LAYERS)})']
