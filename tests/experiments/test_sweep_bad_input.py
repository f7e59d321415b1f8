"""The sweep runner against damaged run files and specs JSON cannot hold: a torn last line is
set aside and its run done again; any other line that is not a run, and two different runs of
one spec, are one ValueError naming the file and the line; a spec is converted to what JSON
gives back, or refused naming its index and key path, before any work."""

import json
import warnings

import numpy as np
import pytest

from tinyvec.experiments.runfile import read_runs
from tinyvec.experiments.sweep import run_sweep, square

SPECS = [{"x": x} for x in range(4)]


def lines_of(path):
    """Every line of a runs.jsonl, parsed; each must be whole (end with a newline)."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def every_spec_once(path, specs):
    keys = [json.dumps(run["spec"], sort_keys=True) for run in lines_of(path)]
    return sorted(keys) == sorted(json.dumps(s, sort_keys=True) for s in specs)


def write_lines(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def run_nothing(spec):
    raise AssertionError(f"a refused sweep ran {spec}")


# --- a torn last line: set aside, reported, its run done again ----------------------------------
def test_a_torn_last_line_is_set_aside_reported_and_its_run_done_again(tmp_path):
    runs_file, damaged = tmp_path / "runs.jsonl", tmp_path / "runs.jsonl.damaged"
    run_sweep(square, SPECS[:2], tmp_path, progress=False)
    with open(runs_file, "a") as f:
        f.write('{"spec": {"x": 2}, "y"')  # killed while writing
    with pytest.warns(UserWarning, match=r"runs\.jsonl, line 3: a torn last line .* set aside"):
        runs = run_sweep(square, SPECS, tmp_path, progress=False)
    assert [r["y"] for r in runs] == [0, 1, 4, 9]
    assert every_spec_once(runs_file, SPECS)
    assert damaged.read_text() == '{"spec": {"x": 2}, "y"\n'
    # a second torn line is added to the damaged file, never over the first
    with open(runs_file, "a") as f:
        f.write('{"spec": {"x": 4}, "y": 1')
    with pytest.warns(UserWarning, match="set aside"):
        run_sweep(square, [*SPECS, {"x": 4}], tmp_path, progress=False)
    assert damaged.read_text() == '{"spec": {"x": 2}, "y"\n{"spec": {"x": 4}, "y": 1\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left to report
        again = run_sweep(square, [*SPECS, {"x": 4}], tmp_path, progress=False)
    assert [r["y"] for r in again] == [0, 1, 4, 9, 16]


def test_a_last_line_without_its_newline_does_not_damage_later_resumes(tmp_path):
    # the kill came after the JSON and before its newline: the next append would be glued to it
    runs_file = tmp_path / "runs.jsonl"
    run_sweep(square, SPECS[:2], tmp_path, progress=False)
    runs_file.write_bytes(runs_file.read_bytes().rstrip(b"\n"))
    with pytest.warns(UserWarning, match="line 2: a torn last line"):
        run_sweep(square, SPECS[:3], tmp_path, progress=False)
    runs = run_sweep(square, SPECS, tmp_path, progress=False)
    assert [r["y"] for r in runs] == [0, 1, 4, 9]
    assert every_spec_once(runs_file, SPECS)


def test_a_whole_last_line_that_is_not_json_is_set_aside(tmp_path):
    runs_file = tmp_path / "runs.jsonl"
    write_lines(runs_file, '{"spec": {"x": 0}, "y": 0}', '{"spec": {"x": 1}, "y"')
    with pytest.warns(UserWarning, match="line 2: a torn last line"):
        runs = run_sweep(square, SPECS, tmp_path, progress=False)
    assert [r["y"] for r in runs] == [0, 1, 4, 9]
    assert every_spec_once(runs_file, SPECS)
    assert (tmp_path / "runs.jsonl.damaged").read_text() == '{"spec": {"x": 1}, "y"\n'


# --- foreign lines: refused naming the file and the line, nothing run or changed ----------------
@pytest.mark.parametrize("foreign", ["{}", "[]", "null", "7", '"run"', '{"spec": [1]}'])
@pytest.mark.parametrize("where", ["between runs", "last"])
def test_a_json_line_that_is_not_a_run_is_refused_naming_its_line(tmp_path, foreign, where):
    runs_file = tmp_path / "runs.jsonl"
    good = ['{"spec": {"x": 0}, "y": 0}', '{"spec": {"x": 1}, "y": 1}']
    lines = [good[0], foreign, good[1]] if where == "between runs" else [*good, foreign]
    write_lines(runs_file, *lines)
    before = runs_file.read_bytes()
    line = 2 if where == "between runs" else 3
    with pytest.raises(ValueError, match=rf"runs\.jsonl, line {line}: .* not a run"):
        run_sweep(run_nothing, SPECS, tmp_path, progress=False)
    with pytest.raises(ValueError, match=rf"line {line}"):
        read_runs(runs_file)
    assert runs_file.read_bytes() == before


def test_a_line_that_is_not_json_before_the_last_is_refused(tmp_path):
    write_lines(tmp_path / "runs.jsonl", '{"spec": {"x": 0}, "y": 0}', "x = 1",
                '{"spec": {"x": 1}, "y": 1}')  # fmt: skip
    with pytest.raises(ValueError, match=r"runs\.jsonl, line 2: 'x = 1' is not JSON"):
        run_sweep(run_nothing, SPECS, tmp_path, progress=False)


# --- two runs of one spec ----------------------------------------------------------------------
def test_two_runs_of_one_spec_with_different_results_are_refused(tmp_path):
    write_lines(tmp_path / "runs.jsonl", '{"spec": {"x": 1}, "y": 1}',
                '{"spec": {"x": 2}, "y": 4}', '{"spec": {"x": 1}, "y": 2}')  # fmt: skip
    with pytest.raises(ValueError, match=r"runs\.jsonl, line 3: a run of the spec of line 1 "
                                         r"with other results \(they differ in y\)"):  # fmt: skip
        run_sweep(run_nothing, SPECS, tmp_path, progress=False)


def test_two_runs_of_one_spec_that_differ_in_run_time_only_are_used_once_with_a_warning(
    tmp_path,
):
    # what two sweeps writing into one folder left before the lock: every spec twice
    write_lines(tmp_path / "runs.jsonl", '{"spec": {"x": 1}, "y": 1, "seconds": 0.5}',
                '{"spec": {"x": 1}, "y": 1, "seconds": 0.7}')  # fmt: skip
    with pytest.warns(UserWarning, match="line 2 repeats the spec and the results"):
        runs = run_sweep(square, SPECS[:2], tmp_path, progress=False)
    assert runs == [{"spec": {"x": 0}, "y": 0}, {"spec": {"x": 1}, "y": 1, "seconds": 0.5}]


# --- specs JSON cannot hold exactly --------------------------------------------------------------
def test_numpy_scalars_in_a_spec_become_python_numbers(tmp_path):
    seen = []

    def record(spec):
        seen.append(spec)
        return square(spec)

    specs = [{"x": np.int64(3), "scale": np.float64(0.5), "on": np.bool_(True)}]
    runs = run_sweep(record, specs, tmp_path, progress=False)
    assert [type(v) for v in seen[0].values()] == [int, float, bool]
    assert runs[0] == {"spec": {"x": 3, "scale": 0.5, "on": True}, "y": 9}
    assert run_sweep(run_nothing, specs, tmp_path, progress=False) == runs  # found on resume


def test_a_tuple_in_a_spec_is_given_as_the_list_json_gives_back(tmp_path):
    seen = []

    def record(spec):
        seen.append(spec["shape"])
        return {"y": sum(spec["shape"])}

    runs = run_sweep(record, [{"shape": (2, 3)}], tmp_path, progress=False)
    assert seen == [[2, 3]]
    assert run_sweep(run_nothing, [{"shape": (2, 3)}], tmp_path, progress=False) == runs


def test_numpy_numbers_and_arrays_in_a_result_are_written_as_json_gives_them_back(tmp_path):
    def numpy_result(spec):  # a study returning NumPy numbers: once a failure after its run
        x = spec["x"]
        return {"n": np.int64(x), "f": np.float32(0.5), "on": np.bool_(True),
                "curve": np.arange(3.0) * x, "nan": np.float64("nan")}  # fmt: skip

    runs = run_sweep(numpy_result, [{"x": 2}], tmp_path, progress=False)
    assert json.dumps(runs[0]) == json.dumps(read_runs(tmp_path / "runs.jsonl")[0])
    assert runs[0]["n"] == 2 and type(runs[0]["n"]) is int and runs[0]["curve"] == [0.0, 2.0, 4.0]
    assert run_sweep(run_nothing, [{"x": 2}], tmp_path, progress=False)[0]["curve"] == [0, 2, 4]


def test_a_result_json_cannot_hold_is_refused_naming_its_type(tmp_path):
    with pytest.raises(
        TypeError, match=r"a run returned a builtins\.set, which runs\.jsonl cannot"
    ):
        run_sweep(lambda spec: {"tags": {1, 2}}, [{"x": 1}], tmp_path, progress=False)


def test_a_set_in_a_spec_is_refused_before_any_work(tmp_path):
    specs = [{"x": 1}, {"x": 2, "tags": {"a": {"b", "c"}}}]
    with pytest.raises(ValueError, match=r'spec 1, at \["tags"\]\["a"\]: a set, which JSON '
                                         r"cannot hold \(give a sorted list\)"):  # fmt: skip
        run_sweep(run_nothing, specs, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"abc", "bytes"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (np.float64("-inf"), "inf"),
        (complex(1, 2), "complex"),
        (object(), "builtins.object"),
        (np.zeros(2), "numpy.ndarray"),
        ({1: "one"}, "the key 1 is a int"),
    ],
    ids=["bytes", "nan", "inf", "numpy-inf", "complex", "object", "array", "int-key"],
)
def test_a_value_json_cannot_hold_exactly_is_refused_naming_spec_and_path(tmp_path, value, says):
    with pytest.raises(ValueError, match=rf'spec 2, at \["run"\]\[1\]: .*{says}'):
        run_sweep(run_nothing, [*SPECS[:2], {"run": [0, value]}], tmp_path, progress=False)


def test_a_spec_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(ValueError, match="spec 0: a list, not a JSON object"):
        run_sweep(run_nothing, [[1, 2]], tmp_path, progress=False)
