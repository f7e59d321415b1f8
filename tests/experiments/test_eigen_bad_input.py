"""The eigen study against values each valid alone but impossible together: one line
``tinyvec eigen: error: …``, status 2, before any work (no run folder)."""

import numpy as np
import pytest

from tinyvec.analysis.eigen_operator import Spectrum, make_operators
from tinyvec.analysis.ritz import leading_errors
from tinyvec.cli import main
from tinyvec.experiments.eigen_config import eigenvalue_count


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tinyvec eigen: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--h", "1", "--k", "2"], "--h"),  # T on R^1 has one eigenvalue of degree ≤ 2
        (["--h", "3", "--k", "9"], "--h"),
        (["--h", "1", "--k", "auto"], "--h"),
        (["--k", "5", "--r", "5"], "--r"),  # the Ritz fit of K outputs needs > K vectors
        (["--k", "5", "--probe", "4"], "--probe"),
        (["--k", "5", "--monitor-probe", "5"], "--monitor-probe"),
    ],
)
def test_k_beyond_what_the_other_values_hold_is_one_line_and_status_2(
    argv, names, capsys, tmp_path
):
    out = tmp_path / "run"
    assert main(["eigen", *argv, "--quick", "--no-plots", "--quiet", "--out", str(out)]) == 2
    assert names in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing was done


def test_the_eigenvalue_count_is_the_spectrums():
    for h in range(1, 7):
        A, B = make_operators(h, 1.0, 1)
        assert Spectrum.of(A, B).values.size == eigenvalue_count(h)


def test_leading_errors_of_many_outputs_ends_and_matches_least_cost():
    """K = 12 once meant 12! permutations (a command that never ended); the least matching
    is the same as by every permutation where both can be computed."""
    rng = np.random.default_rng(0)
    leading = rng.normal(size=12) + 3.0
    values = leading[rng.permutation(12)] * (1 + 0.001 * rng.normal(size=12))
    r = leading_errors(values, leading, np.ones(12, int), False)
    assert r["met"] and r["max_relative_error"] < 0.01
    small = leading_errors(values[:8], leading[:8], np.ones(8, int), False)
    assert len(small["eigenvalues"]) == 8
