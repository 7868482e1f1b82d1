"""Every Python block of the README, the documentation site and the experiments' README runs as written.

One place for all of them. A document's blocks run in order in one namespace, as a reader (or the notebook
build of the site) runs them: ```` ```python ```` fences, MyST ```` ```{code-cell} ```` cells, and ``>>>``
examples (checked with doctest against the output they show). A block that is deliberately not Python
(shell commands, formulas, output) uses another fence language.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "experiments" / "README.md"],
    key=lambda path: str(path),
)
DOCUMENTS = [path for path in DOCUMENTS if path.exists()]

# A fenced block: its fence, its info string (language or MyST directive) and its body.
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
_PYTHON_INFOS = {"python", "py", "{code-cell} ipython3", "{code-cell} python", "{code-cell}"}


def python_blocks(text: str) -> list[str]:
    """The Python blocks of a Markdown/MyST document, in order (MyST cell options stripped)."""
    blocks = []
    for match in _FENCE.finditer(text):
        info = match.group("info").strip()
        if info not in _PYTHON_INFOS:
            continue
        body = match.group("body")
        if info.startswith("{code-cell}"):
            # MyST cell options: a leading `:key: value` block or a `---` YAML front block.
            body = re.sub(r"\A---\n.*?\n---\n", "", body, flags=re.S)
            body = re.sub(r"\A(?::[\w-]+:.*\n)+", "", body)
        blocks.append(body)
    return blocks


def test_fence_parser_finds_python_and_skips_other_languages():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n````{code-cell} ipython3\n:tags: [x]\ny = 2\n````\n"
    assert python_blocks(text) == ["x = 1\n", "y = 2\n"]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_document_python_runs_as_written(path: Path, monkeypatch):
    monkeypatch.chdir(path.parent)  # as the site build runs a page: relative paths from the page's folder
    text = path.read_text()
    namespace: dict = {"__name__": f"docs:{path.name}"}
    for index, block in enumerate(python_blocks(text)):
        if block.lstrip().startswith(">>>"):
            parser = doctest.DocTestParser()
            test = parser.get_doctest(block, namespace, f"{path.name}[{index}]", str(path), 0)
            runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
            runner.run(test, clear_globs=False)
            assert runner.failures == 0, f"{path.name}: doctest block {index} failed"
        else:
            exec(compile(block, f"{path.name} (python block {index})", "exec"), namespace)
