"""The compensation study's figures: a panel with more lines than can be told apart is
refused before anything is drawn."""

import numpy as np
import pytest

from tinyvec.plots.compensation import MAX_LINES, error_vs_eta, learning_curves


def test_a_panel_of_too_many_lines_is_refused_and_nothing_is_written(tmp_path):
    many = {f"rule {i}": np.ones((2, 3)) for i in range(MAX_LINES + 1)}
    with pytest.raises(ValueError, match="split it"):
        learning_curves({"sin": many}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="split it"):
        error_vs_eta({"sin": {k: {0.1: [1.0]} for k in many}}, tmp_path / "e.png")
    assert not list(tmp_path.iterdir())
