"""Packaging (issue 23): the distribution has a name of its own (the PyPI project ``tinyvec`` is
an unrelated package), every install hint uses it, the version is written once and matches the
changelog, and the files the package cites (science.md, py.typed) are where it says. No network,
no build: the wheel and sdist themselves are checked by hand with ``python -m build``."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

import tinyvec as tv
from tinyvec.cli import main
from tinyvec.experiments import common

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
NAME = PROJECT["name"]
EXTRAS = set(PROJECT["optional-dependencies"])

# the package as imported: the checkout, or an installed wheel run against an unpacked sdist
PACKAGE = Path(tv.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
# the texts a user reads: README, docs, examples, changelog (science.md is reached through docs/)
TEXTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md")),
         *sorted((ROOT / "examples").rglob("*.py"))]  # fmt: skip

# `pip install "REQ"` or `pip install -e "REQ"`, with the quotes the hints use for the brackets
HINT = re.compile(r'pip install (?:-e )?"([^"]*)"')
# the foreign project with an extra, quoted or not: "(tinyvec[distributed])" was a help text
FOREIGN = re.compile(r"(?<![\w.-])tinyvec\[")


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_distribution_name_is_ours():
    assert normalized(NAME) != "tinyvec"
    assert normalized(NAME) == "tinyvec-autograd"
    assert PROJECT["scripts"] == {"tinyvec": "tinyvec.cli:main"}  # the command stays `tinyvec`
    # the test extra installs the project's own extras, not the foreign package's
    test = PROJECT["optional-dependencies"]["test"]
    own = [r for r in test if r.split("[")[0] in ("tinyvec", NAME)]
    assert own == [f"{NAME}[experiments,distributed]"]


def test_every_install_hint_in_the_package_names_the_distribution():
    hints = []
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE.parent)
        assert not FOREIGN.search(text), f"{where}: names the foreign package tinyvec[…]"
        for m in HINT.finditer(text):
            hints.append((where, m.group(1)))
    assert len(hints) >= 5, hints  # plots, backend, devices, collapse, common (and --dask help)
    for where, req in hints:
        name, _, extra = req.partition("[")
        assert name == NAME, f"{where}: pip install {req!r} is not {NAME}"
        extra = extra.rstrip("]")
        if not extra.startswith("{"):  # common.require fills the extra in from EXTRAS
            assert set(extra.split(",")) <= EXTRAS, f"{where}: {req!r} names no extra of ours"
    assert set(common.EXTRAS.values()) <= EXTRAS


def test_the_docs_install_the_distribution_or_the_checkout():
    for path in TEXTS:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        assert not FOREIGN.search(text), f"{where}: names the foreign package tinyvec[…]"
        for m in HINT.finditer(text):
            req = m.group(1)
            assert req.startswith((".", f"{NAME}[")), f"{where}: pip install {req!r}"


def test_the_version_is_written_once_and_matches_the_changelog():
    # pyproject reads tinyvec.__version__; it holds no version of its own
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tinyvec.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", tv.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    top = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert top is not None and top.group(1) == tv.__version__


def test_the_installed_metadata_has_the_version():
    try:
        installed = importlib.metadata.version(NAME)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{NAME} is not installed (tests run from a path, not a pip install)")
    assert installed == tv.__version__, f"stale install: pip install -e . again ({installed})"


def test_license():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the tinyvec authors" in text
    # SPDX expressions and license-files need setuptools 77
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]


def test_the_science_notes_and_py_typed_are_package_data(capsys):
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["tinyvec"]
    assert {"py.typed", "science.md"} <= set(data)
    assert (PACKAGE / "py.typed").is_file()
    notes = tv.science_notes_path()
    assert notes == PACKAGE / "science.md" and notes.is_file()
    # the same text as docs/science.md (a link checked out as a plain file would hold a path)
    text = notes.read_text(encoding="utf-8")
    assert text == (ROOT / "docs" / "science.md").read_text(encoding="utf-8")
    assert "# The science tinyvec implements" in text and "## 4." in text
    # the help texts that cite "science.md §N" say where the file is
    assert main(["--help"]) == 0 and str(notes) in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0  # its description cites science.md §4
    assert f"science.md: {notes}" in capsys.readouterr().out
