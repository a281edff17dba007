"""The README and the manual (docs/, mkdocs.yml): the site builds with --strict, a broken
link fails it, the README stays an index, no page names the measuring machine's paths or
issue numbers, the README's links resolve, and every documented command answers --help.
"""

import ast
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
DOCS = os.path.join(REPO, 'docs')
MKDOCS_YML = os.path.join(REPO, 'mkdocs.yml')
MAX_README_LINES = 250

# What no page may contain: the measuring machine's paths, material outside the repository,
# issue numbers.
FORBIDDEN = (
    (r'\.\./shared', '../shared'),
    (r'/tmp/', '/tmp/'),
    (r'/work/', '/work/'),
    (r'(?i)\bissue \d+', 'an issue number'),
)

# A documented command: `python launch.py`, `python -m experiments.X` or `python tools/X.py`,
# at the start of a line of a code block or after a prefix such as `taskset -c 1`.
_PROGRAM = re.compile(
    r'(?:^|[\s;&|(])python (launch\.py|-m experiments\.\w+|tools/\w+\.py)(?=\s|$)')
# Modules a tools/ script may need that gen_jax's environment does not install.
_PEER_MODULES = ('torch', 'diffusers', 'denoising_diffusion_pytorch')


def _read(path: str) -> str:
  with open(path, encoding='utf-8') as f:
    return f.read()


def _doc_pages() -> list[str]:
  return sorted(glob.glob(os.path.join(DOCS, '**', '*.md'), recursive=True))


def _documents() -> list[str]:
  """README.md, every page of docs/ and tools/README.md."""
  return [README, *_doc_pages(), os.path.join(REPO, 'tools', 'README.md')]


def _code_lines(text: str):
  """The lines of the fenced and the indented code blocks of a Markdown text."""
  in_fence, in_indented, prev_blank = False, False, True
  for line in text.splitlines():
    stripped = line.strip()
    if stripped.startswith('```'):
      in_fence = not in_fence
      continue
    if in_fence:
      yield line
    elif line.startswith('    ') and stripped and (in_indented or prev_blank):
      in_indented = True
      yield line
    elif stripped:
      in_indented = False
    prev_blank = not stripped


def _commands(text: str):
  """The code blocks' commands, continuation lines (a trailing backslash) joined."""
  buf = ''
  for line in _code_lines(text):
    part = line.strip()
    buf = f'{buf} {part}' if buf else part
    if buf.endswith('\\'):
      buf = buf[:-1].rstrip()
      continue
    yield buf
    buf = ''
  if buf:
    yield buf


def _documented_commands() -> list[tuple[str, str, str]]:
  """(document, command, program) for every documented command."""
  found = []
  for path in _documents():
    for command in _commands(_read(path)):
      for match in _PROGRAM.finditer(command):
        found.append((os.path.relpath(path, REPO), command, match.group(1)))
  return found


def _programs() -> list[str]:
  return sorted({program for _, _, program in _documented_commands()})


def _mkdocs_build(config: str, site: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--config-file', config,
       '--site-dir', site],
      capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope='module')
def mkdocs():
  return pytest.importorskip('mkdocs', reason='mkdocs is in the test extra: pip install -e ".[test]"')


def test_site_builds_strict(mkdocs, tmp_path):
  del mkdocs
  result = _mkdocs_build(MKDOCS_YML, str(tmp_path / 'site'))
  assert result.returncode == 0, result.stdout + result.stderr
  assert os.path.exists(tmp_path / 'site' / 'index.html')


@pytest.mark.parametrize('broken', [
    '[a page that does not exist](no_such_page.md)',
    '[an anchor that does not exist](install.md#no-such-section)',
    '[a missing image](no_such_figure.png)',
])
def test_a_broken_link_fails_the_build(mkdocs, tmp_path, broken):
  del mkdocs
  shutil.copytree(DOCS, tmp_path / 'docs')
  shutil.copy(MKDOCS_YML, tmp_path / 'mkdocs.yml')
  with open(tmp_path / 'docs' / 'index.md', 'a', encoding='utf-8') as f:
    f.write(f'\n\n{broken}\n')
  result = _mkdocs_build(str(tmp_path / 'mkdocs.yml'), str(tmp_path / 'site'))
  assert result.returncode != 0, 'mkdocs build --strict accepted ' + broken
  target = re.search(r'\]\(([^)#]+)', broken).group(1)
  assert target in result.stdout + result.stderr


def test_readme_is_an_index():
  lines = _read(README).splitlines()
  assert len(lines) <= MAX_README_LINES, (
      f'README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/')


@pytest.mark.parametrize('path', [os.path.relpath(p, REPO) for p in _documents()] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(DOCS, '**', '*.json'),
                                                recursive=True)))
def test_no_machine_paths_or_issue_numbers(path):
  text = _read(os.path.join(REPO, path))
  for pattern, what in FORBIDDEN:
    hits = [line.strip() for line in text.splitlines() if re.search(pattern, line)]
    assert not hits, f'{path} names {what}: {hits[:3]}'


@pytest.mark.parametrize('path', ['README.md', 'tools/README.md'])
def test_relative_links_resolve(path):
  """Every relative link (and image) of the README resolves to a file of the repository."""
  text = _read(os.path.join(REPO, path))
  base = os.path.dirname(os.path.join(REPO, path))
  links = re.findall(r'!?\[[^\]]*\]\(([^)\s]+)\)', text)
  assert links, f'{path} has no links'
  missing = []
  for link in links:
    if re.match(r'[a-z][a-z0-9+.-]*:', link) or link.startswith('#'):
      continue  # https:, mailto:, an anchor on the same page
    target = os.path.normpath(os.path.join(base, link.split('#')[0]))
    if not target.startswith(REPO) or not os.path.exists(target):
      missing.append(link)
  assert not missing, f'{path}: links to nothing: {missing}'


def test_readme_test_command_is_ci_s():
  """.ci/run runs the README's test command: the two must stay the same."""
  ci = [line.strip() for line in _read(os.path.join(REPO, '.ci', 'run')).splitlines()
        if line.strip().startswith('python -m pytest')]
  assert ci == ['python -m pytest -q -n 2 --dist loadfile tests']
  readme = list(_commands(_read(README)))
  assert ('XLA_FLAGS=--xla_force_host_platform_device_count=8 ' + ci[0]) in readme


def test_config_reference_markers():
  """docs/configuration.md's `## Reference` holds the generated reference's two markers."""
  text = _read(os.path.join(DOCS, 'configuration.md'))
  begin, end = '<!-- config-reference:begin -->', '<!-- config-reference:end -->'
  assert text.count(begin) == 1 and text.count(end) == 1
  section = text[text.index('\n## Reference\n'):]
  assert section.index(begin) < section.index(end)
  assert '\n## ' not in section[len('\n## Reference\n'):section.index(end)]


def test_results_pages_have_provenance_and_are_listed():
  index = _read(os.path.join(DOCS, 'results', 'index.md'))
  pages = [p for p in glob.glob(os.path.join(DOCS, 'results', '*.md'))
           if os.path.basename(p) != 'index.md']
  assert pages
  for page in pages:
    name = os.path.basename(page)
    text = _read(page)
    for row in ('| date |', '| commit |', '| machine |', '| versions |'):
      assert row in text, f'docs/results/{name} lacks its {row} row'
    assert re.match(r'\d{4}-\d{2}-\d{2}-', name), f'docs/results/{name}: name it DATE-what.md'
    assert f']({name})' in index, f'docs/results/index.md does not list {name}'
  listed = re.findall(r'\]\((\d{4}-\d{2}-\d{2})-[^)]+\.md\)', index)
  assert listed == sorted(listed, reverse=True), 'docs/results/index.md: newest first'


def test_experiments_commands_are_written_in_their_absl_form():
  """`python -m experiments.X --snake_case`, never `python experiments/x.py --kebab-case`."""
  for path in _documents():
    text = _read(path)
    assert not re.search(r'python experiments/', text), (
        f'{os.path.relpath(path, REPO)}: write `python -m experiments.X`')
  for document, command, program in _documented_commands():
    if program.startswith('-m experiments.') or program == 'launch.py':
      kebab = re.findall(r'(?:^|\s)(--[a-z0-9]+-[a-z0-9-]+)', command)
      assert not kebab, f'{document}: {command!r} has kebab-case flags {kebab}'


def _missing_peer_modules(script: str) -> list[str]:
  """The modules of _PEER_MODULES that `script` imports at its top level and that this
  environment lacks."""
  tree = ast.parse(_read(os.path.join(REPO, script)))
  names = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      names.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module.split('.')[0])
  return sorted(m for m in names & set(_PEER_MODULES) if importlib.util.find_spec(m) is None)


def test_commands_are_documented():
  programs = _programs()
  assert 'launch.py' in programs
  assert any(p.startswith('-m experiments.') for p in programs)
  assert any(p.startswith('tools/') for p in programs)


@pytest.mark.parametrize('program', _programs())
def test_documented_command_shows_help(program):
  """Each documented program runs with --help: absl prints its flags and exits 1 (its
  convention for --help), argparse exits 0; neither may fail on an import."""
  if program.startswith('tools/'):
    missing = _missing_peer_modules(program)
    if missing:
      pytest.skip(f'{program} imports {", ".join(missing)} at its top level, which this '
                  'environment lacks (the PyTorch environment of tools/README.md has them)')
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([REPO, *filter(None, [env.get('PYTHONPATH')])])
  env.setdefault('JAX_PLATFORMS', 'cpu')
  result = subprocess.run([sys.executable, *program.split(), '--help'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
  output = result.stdout + result.stderr
  assert 'Traceback' not in output, output[-3000:]
  absl_help = result.returncode == 1 and 'Try --helpfull' in output
  assert result.returncode == 0 or absl_help, (
      f'python {program} --help exited {result.returncode}:\n{output[-3000:]}')
  assert '--' in output  # it listed its flags
  if absl_help:  # every flag the documents pass to it is one of its flags
    full = subprocess.run([sys.executable, *program.split(), '--helpfull'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    defined = full.stdout + full.stderr
    for document, command, documented in _documented_commands():
      if documented != program:
        continue
      args = command.split(f'python {program}', 1)[1]
      for name in re.findall(r'(?:^|\s)--([a-z_][a-z0-9_]*)(?=[=\s]|$)', args):
        known = (f'--{name}:' in defined or f'--[no]{name}:' in defined or
                 (name.startswith('no') and f'--[no]{name[2:]}:' in defined))
        assert known, f'{document}: python {program} has no flag --{name} ({command!r})'
