"""examples/orthogonalization_over_time.py: the table it prints, its seeding, its refusals."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).parents[2] / "examples" / "orthogonalization_over_time.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("orthogonalization_over_time", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(example, capsys, *argv):
    assert example.main(["--quick", "--epochs", "5", *argv]) == 0
    return capsys.readouterr().out.split("\n\n")[0]


def test_quick_run_prints_every_method_and_the_same_numbers_for_the_same_seed(example, capsys):
    first = table(example, capsys, "--seed", "3")
    rows = first.splitlines()[2:]
    methods = [row.split("|")[3:5] for row in rows]
    assert methods == [
        [" sample ", " plain "],
        [" sample ", " over-time M=4 ε=0.001 "],
        [" batch ", " plain "],
        [" batch ", " in-batch ε=0.001 "],
    ]
    assert all(row.split("|")[8].strip() in ("0/2", "1/2", "2/2") for row in rows)
    assert table(example, capsys, "--seed", "3") == first
    assert table(example, capsys, "--seed", "4") != first


def test_a_diverging_run_is_counted_not_averaged(example, capsys):
    rows = table(example, capsys, "--etas", "1e3").splitlines()[2:]
    assert all("| – | – | 2/2 |" in row for row in rows)


def test_bad_arguments_are_refused(example):
    with pytest.raises(ValueError, match="memory must be a whole number"):
        example.main(["--quick", "--memory", "-1"])
    with pytest.raises(SystemExit):
        example.main(["--quick", "--etas", "0"])
