"""MkDocs hooks of the documentation site (mkdocs.yml: ``hooks``). Nothing here needs a network.

- **Maths, offline.** pymdownx.arithmatex (generic mode) leaves ``\\(…\\)`` and ``\\[…\\]`` in
  ``<span class="arithmatex">`` / ``<div class="arithmatex">``; each is replaced by MathML
  from latex2mathml, which every current browser renders itself: no MathJax, no KaTeX, no
  script, no font to fetch.
- **The science notes.** docs/science.md is also the plain-text copy the wheel carries and the
  help texts cite, so its formulas are written in Unicode inside code spans
  (`` `ΔW^k o^{k-1} = -α ‖o^{k-1}‖² δ^k` ``). On the site each such span (not a command, a
  path or Python) is translated to LaTeX and rendered as maths.
- **Notebooks.** Each ``docs/notebooks/*.py`` (jupytext py:percent) becomes a page
  ``notebooks/NAME.md``: markdown cells as they are, code cells as Python blocks, and a note
  on how to run it. The .py file itself is copied too, so the page links to it.
"""

from __future__ import annotations

import html as htmllib
import re
from pathlib import Path
from typing import Any

import jupytext
from latex2mathml.converter import convert
from mkdocs.structure.files import File, Files

# --- maths ------------------------------------------------------------------------------------
_INLINE = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.S)


def _mathml(latex: str, display: str) -> str:
    return convert(htmllib.unescape(latex).strip(), display=display)


def on_page_content(html: str, page: Any, **_: Any) -> str:
    html = _BLOCK.sub(lambda m: f'<div class="math">{_mathml(m.group(1), "block")}</div>', html)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), html)


# --- the science notes' Unicode formulas --------------------------------------------------------
_CODE = re.compile(r"^(tinyvec|--|docs/|seeds/|\+$)|Dense\(|connection\(")
_WORDS = (
    "sin cos corr cov var sign diag avg mean std Tr Re expm SE batch value own".split()
)  # set upright; any other run of letters is a product (Ax, TF, ηM)
_SUP = dict(
    zip(
        "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺ᵀ",
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "-", "+", r"\top "],
        strict=True,
    )
)
_SUB = dict(zip("₀₁₂₃₄₅₆₇₈₉", "0123456789", strict=True))
_SYMBOLS = {
    "‖": r"\Vert ", "·": r"\cdot ", "×": r"\times ", "≈": r"\approx ", "≤": r"\le ",
    "≠": r"\ne ", "←": r"\leftarrow ", "⊙": r"\odot ", "⊗": r"\otimes ", "∂": r"\partial ",
    "∇": r"\nabla ", "⟨": r"\langle ", "⟩": r"\rangle ", "−": "-", "′": "'",
}  # fmt: skip


def unicode_to_latex(text: str) -> str:
    """``ΔW^k o^{k-1} = -α ‖o^{k-1}‖² δ^k`` → LaTeX latex2mathml reads.

    >>> unicode_to_latex("δ̃ = δ D (G + εI)⁻¹")
    '{\\\\tilde{δ}} = δ D (G + εI)^{-1}'
    >>> unicode_to_latex("Δb^k = -α Σ_batch δ^k")
    'Δb^k = -α Σ_{\\\\mathrm{batch}} δ^k'
    """
    text = re.sub(r"(\S)\u0303", r"{\\tilde{\1}}", text)  # combining tilde, hat
    text = re.sub(r"(\S)\u0302", r"{\\hat{\1}}", text)
    text = re.sub(
        "[" + "".join(_SUP) + "]+", lambda m: "^{" + "".join(_SUP[c] for c in m[0]) + "}", text
    )
    text = re.sub(
        "[" + "".join(_SUB) + "]+", lambda m: "_{" + "".join(_SUB[c] for c in m[0]) + "}", text
    )
    text = re.sub(r"\^\(([^()]*)\)", r"^{\1}", text)  # C^(-1/2)
    text = re.sub(r"_([A-Za-z]{2,})", r"_{\\mathrm{\1}}", text)
    words = "|".join(w for w in _WORDS if w not in ("batch", "own", "value"))
    text = re.sub(rf"(?<![A-Za-z\\])({words})(?![A-Za-z])", r"\\operatorname{\1}", text)
    text = re.sub(r"(?<![A-Za-z\\{])(value)(?![A-Za-z])", r"\\mathrm{\1}", text)
    for symbol, latex in _SYMBOLS.items():
        text = text.replace(symbol, latex)
    # a superscript after a superscript (O^{k-1}ᵀ): put the first one in a group
    return re.sub(r"(\w\^\{[^{}]*\}|\w\^\w)\^", r"{\1}^", text)


def _formula(m: re.Match) -> str:
    span = m.group(1)
    if _CODE.search(span):
        return m.group(0)
    latex = unicode_to_latex(span)
    try:
        convert(latex)
    except Exception:  # a span latex2mathml cannot read stays code
        return m.group(0)
    return f"\\({latex}\\)"


def names_table() -> str:
    """Every name of ``tinyvec.__all__`` with the reference page of the module defining it."""
    import types

    import tinyvec

    pages: dict[str, list[str]] = {}
    for name in tinyvec.__all__:
        obj = getattr(tinyvec, name)
        module = obj.__name__ if isinstance(obj, types.ModuleType) else None
        module = module or getattr(obj, "__module__", None) or type(obj).__module__
        if not module.startswith("tinyvec"):  # an instance (tv.relu): its class's module
            module = type(obj).__module__
        part = module.split(".")[1] if module.count(".") else "tinyvec"
        part = {"ops": "engine"}.get(part, part)
        pages.setdefault(part, []).append(f"`tv.{name}`")
    rows = [
        f"| [{part}]({part}.md) | {', '.join(names)} |"
        for part, names in sorted(pages.items())
        if part != "tinyvec"
    ]
    return "\n".join(["| page | names |", "|---|---|", *rows])


_ITEM = re.compile(r"^(- |\d+\. )")


def lists_after_paragraphs(markdown: str) -> str:
    r"""A blank line before a list that follows a line of text. GitHub starts a list there;
    Python-Markdown needs the blank line, and science.md and the result files are written
    for both.

    >>> lists_after_paragraphs("Text:\n- a\n- b")
    'Text:\n\n- a\n- b'
    """
    out: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        prev = out[-1] if out else ""
        if (
            not fenced
            and _ITEM.match(line)
            and prev.strip()
            and not _ITEM.match(prev)
            and not prev.startswith((" ", "|", "#", ">", "<"))
        ):
            out.append("")
        out.append(line)
    return "\n".join(out) + ("\n" if markdown.endswith("\n") else "")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    markdown = lists_after_paragraphs(markdown)
    if page.file.src_uri == "reference/tinyvec.md":
        return markdown.replace("<!-- tinyvec-names -->", names_table())
    if page.file.src_uri != "science.md":
        return markdown
    # code spans outside fenced blocks (science.md has none)
    return re.sub(r"(?<!`)`([^`\n]+)`(?!`)", _formula, markdown)


# --- notebooks ------------------------------------------------------------------------------------
def notebook_page(source: Path) -> str:
    """The markdown of a py:percent notebook's page."""
    nb = jupytext.read(source)
    name = source.name
    run = (
        f'!!! tip "Run it yourself"\n'
        f"    This page is [`{name}`]({name}), a notebook kept as text (jupytext, py:percent).\n"
        f"    Open it in Jupyter with `pip install jupytext` (it opens `.py` notebooks), or\n"
        f"    convert it: `jupytext --to notebook docs/notebooks/{name}`; or run it whole:\n"
        f"    `python docs/notebooks/{name}`. The test suite runs every cell of it.\n"
    )
    parts: list[str] = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            if i == 0:
                parts.append(run)
        elif cell.cell_type == "code" and cell.source.strip():
            parts.append(f"```python\n{cell.source}\n```")
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config: Any, **_: Any) -> Files:
    docs = Path(config["docs_dir"])
    for source in sorted((docs / "notebooks").glob("*.py")):
        uri = f"notebooks/{source.stem}.md"
        files.append(File.generated(config, uri, content=notebook_page(source)))
    return files
