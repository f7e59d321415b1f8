"""The ``tinyvec`` command: every bad argument is one line ``tinyvec CMD: error: …`` with
status 2 before any work, Ctrl-C is one line with status 130, and a run folder is never a mix
of two runs."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tinyvec import __version__
from tinyvec.cli import main
from tinyvec.experiments import common


def one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tinyvec {command}: error: "), err
    return err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--epochs", "0"],
        ["demo", "--batch", "-3"],
        ["demo", "--lr", "nan"],
        ["compensation", "--points", "0"],
        ["compensation", "--tasks", "cos"],
        ["compensation", "--quick", "--full"],
        ["compensation", "--seeds", "3"],
        ["compensation", "--jobs", "0"],
        ["collapse", "--epochs", "0"],
        ["collapse", "--losses", "hinge"],
        ["collapse", "--depth", "2", "--decay-layers", "4"],
        ["analyze", "--steps", "0"],
        ["analyze", "--format", "jpg"],
        ["analyze", "--dpi", "0"],
        ["analyze", "--no-such-flag"],
        ["analyze", "--seeds", "0-1", "--dask", "notaurl"],
        ["collapse", "--seeds", "0-1", "--dask", "http://host:8786"],
        # issue 23: nonsense that was taken quietly
        ["eigen", "--k", "0"],  # was read as auto
        ["eigen", "--lr", "0.1", "--lr-final", "0.5"],  # a "decay" that grows
        ["eigen", "--steps", "300", "--tail", "500"],
        ["eigen", "--steps", "300", "--record-every", "1000"],
        ["compensation", "--points", "1"],  # sin·cos made it a 2 × 2 grid
        ["eigen", "--lr", "-0.1"],
        ["eigen", "--steps", "0"],
        ["collapse", "--lr", "0"],
        ["collapse", "--wd", "-1"],
        ["compensation", "--etas-sample", "0"],
        ["compensation", "--epochs-sample", "0"],
        ["analyze", "--lr", "-1"],
        ["analyze", "--n", "0"],
    ],
)
def test_bad_arguments_are_one_line_and_status_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    one_error_line(capsys, argv[0])
    assert list(tmp_path.iterdir()) == []  # nothing was done


def test_eigen_k_0_names_auto_in_its_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eigen", "--k", "0"]) == 2
    assert "outputs ≥ 1 or 'auto', got '0'" in one_error_line(capsys, "eigen")


def test_a_sweep_config_with_k_auto_reads_back_as_auto(tmp_path):
    from tinyvec.experiments import eigen

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"k": "auto", "steps": 300}))
    args = common.parse(eigen.parser(), ["--config", str(path), "--no-plots", "--out",
                                         str(tmp_path / "o")])  # fmt: skip
    assert args.k == "auto" and eigen.k_of(args.k) == 0


def test_out_is_a_folder_everywhere(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out", "my.npz"]) == 2
    assert "looks like a file name" in one_error_line(capsys, "demo")
    (tmp_path / "file").write_text("x")
    for command in ("demo", "collapse", "analyze", "compensation"):
        assert main([command, "--out", "file"]) == 2
        assert "existing file" in one_error_line(capsys, command)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    assert main(["analyze", "--out", "mine"]) == 2
    assert "holds no tinyvec run" in one_error_line(capsys, "analyze")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine"]


def test_out_where_nothing_can_be_written_is_refused_before_any_work(capsys, tmp_path):
    """Found by the audit: --out under a file, or in /proc, ran the study and then ended in
    "[Errno 20] Not a directory: 'file/run.incomplete'" with exit status 1."""
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "run", tmp_path / "file" / "a" / "b"):
        assert main(["demo", "--out", str(out)]) == 2
        assert "cannot write into" in one_error_line(capsys, "demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert (
        main(["demo", "--quick", "--no-plots", "--quiet", "--out", str(tmp_path / "a" / "b")]) == 0
    )
    assert (tmp_path / "a" / "b" / "config.json").is_file()  # missing folders above are made


@pytest.mark.parametrize(
    "module", ["compensation_converged", "eigen_rotation", "eigen_frontier", "eigen_settings"]
)
def test_a_study_run_with_python_m_names_that_command_in_its_errors(module, capsys):
    """Found by the audit: they said "see tinyvec eigen-rotation --help", a command that
    does not exist (these studies of docs/results run as python -m)."""
    study = importlib.import_module(f"tinyvec.experiments.{module}")
    with pytest.raises(SystemExit) as stop:
        study.main(["--bogus"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    prog = f"python -m tinyvec.experiments.{module}"
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    assert err[0].endswith(f"(see {prog} --help)")


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '{"epochs": 0}', '{"nope": 1}'])
def test_bad_config_files(content, capsys, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main(["demo", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    one_error_line(capsys, "demo")
    assert not (tmp_path / "o").exists()


def test_unknown_command_version_and_help(capsys):
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyvec: error: unknown command 'nonsense'") and "usage:" in err
    assert main([]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tinyvec {__version__}"
    assert main(["--help"]) == 0 and "compensation" in capsys.readouterr().out
    assert main(["demo", "--help"]) == 0 and "--config" in capsys.readouterr().out


def test_missing_extra_is_named_at_the_start(capsys, tmp_path, monkeypatch):
    real = common.importlib.util.find_spec
    missing = {"matplotlib", "distributed"}
    monkeypatch.setattr(common.importlib.util, "find_spec",
                        lambda name: None if name in missing else real(name))  # fmt: skip
    assert main(["analyze", "--out", str(tmp_path / "a")]) == 2
    line = one_error_line(capsys, "analyze")
    assert 'pip install "tinyvec-autograd[experiments]"' in line and "--no-plots" in line
    assert main(["compensation", "--quick", "--dask", "tcp://127.0.0.1:8786",
                 "--no-plots", "--out", str(tmp_path / "c")]) == 2  # fmt: skip
    assert 'pip install "tinyvec-autograd[distributed]"' in one_error_line(capsys, "compensation")
    assert list(tmp_path.iterdir()) == []


def test_config_json_reruns_the_study(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["demo", "--quick", "--quiet", "--seed", "3", "--out", str(a)]) == 0
    config = json.loads((a / "config.json").read_text())
    assert config["seed"] == 3 and config["epochs"] == 5 and "out" not in config
    assert main(["demo", "--config", str(a / "config.json"), "--out", str(b), "--quiet"]) == 0
    assert json.loads((b / "config.json").read_text()) == config
    assert (a / "model.npz").read_bytes() == (b / "model.npz").read_bytes()
    # a flag given on the command line overrides the file
    assert main(["demo", "--config", str(a / "config.json"), "--out", str(b), "--quiet",
                 "--epochs", "2"]) == 0  # fmt: skip
    assert json.loads((b / "config.json").read_text())["epochs"] == 2


def test_a_rerun_replaces_the_whole_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["analyze", "--steps", "5", "--no-plots", "--quiet", "--out", str(out)]) == 0
    (out / "left-over.png").write_text("from an older run")
    assert main(["analyze", "--steps", "6", "--no-plots", "--quiet", "--out", str(out)]) == 0
    assert not (out / "left-over.png").exists() and not (out / "INCOMPLETE").exists()
    assert json.loads((out / "config.json").read_text())["steps"] == 6
    # a run that fails halfway leaves the previous run whole, and its own files marked
    from tinyvec.experiments import analyze

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(analyze, "write", boom)
    assert main(["analyze", "--steps", "7", "--no-plots", "--quiet", "--out", str(out)]) == 130
    assert json.loads((out / "config.json").read_text())["steps"] == 6
    assert (tmp_path / "run.incomplete" / "INCOMPLETE").is_file()
    assert "interrupted" in capsys.readouterr().err


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "tinyvec", "--version"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == f"tinyvec {__version__}"


def test_ctrl_c_is_one_line_and_status_130(tmp_path, ctrl_c):
    """SIGINT in the middle of a sweep with worker processes: one line, status 130, and the
    folder marked INCOMPLETE."""
    out = tmp_path / "c"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "tinyvec", "compensation", "--quick", "--epochs-sample", "400",
            "--epochs-batch", "400", "--no-plots", "--quiet", "--jobs", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, **ctrl_c)  # fmt: skip
    for _ in range(600):  # wait for the sweep to start (not a timed assertion)
        if (out / "runs.jsonl").exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["tinyvec compensation: interrupted"]
    assert (out / "INCOMPLETE").is_file()
