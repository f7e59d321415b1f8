"""Every ```python block of README.md runs on its own: in a fresh namespace, in an empty
folder, with nothing from the blocks before it. A block is skipped only when the line just
before it is ``<!-- readme-test: skip REASON -->`` (the reason is required)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = re.compile(r"^<!-- readme-test: skip (\S.*) -->$")


def blocks(text):
    """(first line number, language, code, skip reason or None) for each fenced block."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        start, lang = i, m.group(1)
        i += 1
        while not lines[i].startswith("```"):
            i += 1
        before = SKIP.match(lines[start - 1]) if start else None
        out.append((start + 1, lang, "\n".join(lines[start + 1 : i]), before and before.group(1)))
        i += 1
    return out


PYTHON = [b for b in blocks(README.read_text(encoding="utf-8")) if b[1] == "python"]


def test_the_readme_has_python_blocks_and_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(PYTHON) >= 3  # (a landing page: the guides' blocks run in tests/test_docs.py)
    assert 'pip install -e ".[test]" && pytest -q' in text


@pytest.mark.parametrize(
    ("line", "lang", "code", "skip"), PYTHON, ids=[f"line{b[0]}" for b in PYTHON]
)
def test_block_runs_on_its_own(line, lang, code, skip, tmp_path, monkeypatch):
    if skip:
        pytest.skip(f"README line {line}: {skip}")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"readme_line_{line}"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
