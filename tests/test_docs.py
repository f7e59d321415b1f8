"""Every ```python block of the site's own pages (docs/*.md, docs/concepts, docs/how-to,
docs/studies) runs on its own, as the README's blocks do (tests/test_readme.py): in a fresh
namespace, in an empty folder. A block is skipped only after
``<!-- readme-test: skip REASON -->``. The studies' result files are not pages we write."""

from pathlib import Path

import pytest
from test_readme import blocks

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(
    p
    for p in [*DOCS.glob("*.md"), *DOCS.glob("concepts/*.md"), *DOCS.glob("how-to/*.md"),
              *DOCS.glob("studies/*.md")]
)  # fmt: skip
PYTHON = [
    (page, *block)
    for page in PAGES
    for block in blocks(page.read_text(encoding="utf-8"))
    if block[1] == "python"
]


def test_the_pages_have_python_blocks():
    assert len(PYTHON) >= 8


@pytest.mark.parametrize(
    ("page", "line", "lang", "code", "skip"),
    PYTHON,
    ids=[f"{b[0].relative_to(DOCS)}:{b[1]}" for b in PYTHON],
)
def test_block_runs_on_its_own(page, line, lang, code, skip, tmp_path, monkeypatch):
    if skip:
        pytest.skip(f"{page.name} line {line}: {skip}")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}_{line}"}
    exec(compile(code, f"{page}:{line}", "exec"), namespace)


def test_the_site_tools_doctests(monkeypatch):
    """tools/docs: the hooks (maths, science.md's formulas, lists) and the doctest fences."""
    import doctest
    import importlib

    pytest.importorskip("mkdocs")  # the hooks import mkdocs, latex2mathml and jupytext:
    pytest.importorskip("latex2mathml")  # installed by the docs extra
    monkeypatch.syspath_prepend(str(DOCS.parent / "tools" / "docs"))
    for name in ("hooks", "doctest_fences"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.attempted and not result.failed, name
