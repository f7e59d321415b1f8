"""The notebooks of docs/notebooks (jupytext py:percent files) run cell by cell in a Jupyter
kernel, as a student runs them, in their quick profile (``TINYVEC_QUICK=1``: small runs).
The documentation site renders the same files (tools/docs/hooks.py)."""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("*.py"))


def run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TINYVEC_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline figures, as in Jupyter
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and the traceback, on an error
    return nb


def outputs(nb, mime: str) -> list[str]:
    return [
        o["data"][mime]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "data" in o and mime in o["data"]
    ]


def test_there_are_the_four_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {
        "backprop_by_hand",
        "reading_delta",
        "own_layer",
        "eigen",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_cell_by_cell(path, tmp_path, monkeypatch):
    nb = run(path, tmp_path, monkeypatch)
    text = "".join("".join(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
    if path.stem == "backprop_by_hand":  # δ^k by hand equals model[k].delta for every layer
        assert text.count("max |difference|") == 6 and "True, Δb^k True" in text
        assert "False" not in text
    if path.stem == "own_layer":  # a model displays richly, the NaN parameter flagged
        pages = outputs(nb, "text/html")
        assert any("model.layers[1].scale" in p and "1 NaN of 3" in p for p in pages)
        assert "gradients match" in text and "gradients differ" in text
    if path.stem == "reading_delta":
        assert any("tinyvec-recorder" in p for p in outputs(nb, "text/html"))
    if path.stem in ("reading_delta", "eigen"):  # the figures come out
        assert outputs(nb, "image/png")
