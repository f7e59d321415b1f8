"""Our own hostile pass (issue 19, item 6): hypothesis throws random arguments, valid and not,
at the public API and at every command and flag of the CLI, and Ctrl-C at random moments of
a run. Nothing may end in a silent wrong result or a foreign exception: a call succeeds, or
raises one of the documented error types from a ``raise`` of tinyvec's own, with a message; a
command exits 0, or 2 with one line ``tinyvec CMD: error: …``, or 130 when interrupted, never
with a traceback.

The "ci" profile (the default) runs a few cases of each in well under a minute; run the
thorough pass by hand: ``HYPOTHESIS_PROFILE=thorough pytest tests/test_fuzz.py``. What a
pass found became named tests in the bad-input module of its area (see the CHANGELOG).
"""

import linecache
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import array_api_strict
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.cli import COMMANDS, main

# the documented errors (DimensionMismatch is a ValueError, NonFiniteLoss a FloatingPointError,
# GradcheckError an AssertionError, FileNotFoundError and IsADirectoryError OSErrors)
DOCUMENTED = (TypeError, ValueError, FloatingPointError, tv.GradcheckError, OSError, KeyError)
TINYVEC = str(Path(tv.__file__).parent)


def own_error(e: BaseException) -> bool:
    """Whether ``e`` is a documented error raised by a ``raise`` statement in tinyvec (not an
    error of NumPy's, or of Python's, passing through), with a message."""
    if not isinstance(e, DOCUMENTED) or not str(e).strip():
        return False
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    where = tb.tb_frame.f_code.co_filename
    line = linecache.getline(where, tb.tb_lineno).strip()
    return where.startswith(TINYVEC) and line.startswith("raise")


def call(f, *args, **kw):
    """f(*args, **kw), or the documented error it raised (anything else fails the test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return f(*args, **kw)
    except Exception as e:
        assert own_error(e), f"a foreign exception: {type(e).__name__}: {e}"
        return e


# --- the public API ------------------------------------------------------------------------------
NUMBERS = st.sampled_from([0, 1, 2, 3, -1, 0.5, 1e-3, math.nan, math.inf, -0.0, True, None, "2"])
SHAPES = st.sampled_from([(2, 3), (1, 3), (3, 2), (2,), (3,), (), (2, 0), (0, 3)])
DTYPES = st.sampled_from(["float64", "float32", "int64", "bool", "U1", "O", "complex128"])


@st.composite
def arrays(draw):
    shape, dtype = draw(SHAPES), draw(DTYPES)
    a = np.random.default_rng(draw(st.integers(0, 9))).standard_normal(shape)
    if dtype == "U1":
        return np.full(shape, "a")
    if dtype == "O":
        return a.astype(object)
    return a.astype(dtype)


def model(seed=0):
    return tv.Chain(tv.Dense(2, 3, tv.tanh, rng=seed), tv.Dense(3, 2, rng=seed + 1))


@given(loss=st.sampled_from([tv.mse, tv.crossentropy, tv.r2]), a=arrays(), b=arrays())
def test_losses_answer_any_arrays_or_say_what_is_wrong(loss, a, b):
    out = call(loss, a, b)
    if not isinstance(out, Exception):
        assert np.ndim(out) == 0


@given(
    n_in=NUMBERS, n_out=NUMBERS, sigma=st.sampled_from(["tanh", "nope", tv.relu, 3, None]),
    bias=st.sampled_from([True, False, None, 0.5, "yes", np.zeros(2), np.zeros(3)]),
)  # fmt: skip
def test_dense_is_built_or_refused(n_in, n_out, sigma, bias):
    call(tv.Dense, n_in, n_out, sigma, bias=bias)


RULES = st.sampled_from([tv.Descent, tv.Momentum, tv.Nesterov, tv.Adam, tv.AdamW])
DELTAS = st.sampled_from(
    [None, lambda: tv.Compensation(0.2), lambda: tv.Orthogonalization(), lambda: "delta"]
)


@given(rule=RULES, eta=NUMBERS, delta=DELTAS, x=arrays(), y=arrays(), compiled=st.booleans())
def test_a_training_step_with_any_rule_and_batch_steps_or_says_what_is_wrong(
    rule, eta, delta, x, y, compiled
):
    made = call(rule, eta)
    if isinstance(made, Exception):
        return
    m = model()
    state = call(tv.setup, made, m, delta=None if delta is None else delta())
    if isinstance(state, Exception):
        return
    before = [getattr(layer, n).copy() for _, layer, n in tv.trainables(m)]
    if compiled:
        out = call(lambda: tv.compile(tv.mse, m, state)(x, y))
    else:
        out = call(lambda: tv.update(state, m, tv.gradient(lambda m: tv.mse(m(x), y), m)))
    after = [getattr(layer, n) for _, layer, n in tv.trainables(m)]
    if isinstance(out, Exception):  # refused: nothing changed
        assert all(a.tobytes() == b.tobytes() for a, b in zip(before, after, strict=True))
    else:  # a step was taken: every parameter finite
        assert all(np.isfinite(a).all() for a in after)


@given(
    epochs=NUMBERS, steps=NUMBERS, batches=st.integers(0, 2), shape=SHAPES,
    every=NUMBERS, compiled=st.booleans(),
)  # fmt: skip
def test_train_with_any_counts_trains_or_refuses(epochs, steps, batches, shape, every, compiled):
    m = model()
    g = np.random.default_rng(0)
    data = [(g.standard_normal(shape), g.standard_normal((2, *shape[1:]))) for _ in range(batches)]
    rec = call(tv.Recorder, every, None if every is None else os.devnull + "x")
    rec = None if isinstance(rec, Exception) else rec
    call(
        tv.train, tv.mse, m, data, tv.setup(tv.Descent(0.1), m), epochs=epochs, steps=steps,
        progress=False, recorder=rec, compile=compiled,
    )  # fmt: skip


@given(rtol=NUMBERS, atol=NUMBERS, eps=NUMBERS, x=arrays())
def test_gradcheck_checks_or_refuses_never_passes_a_wrong_derivative(rtol, atol, eps, x):
    wrong = tv.ops.primitive(lambda x: x**3, lambda g, out, x: (g * 2 * x**2,))
    kw = {k: v for k, v in (("rtol", rtol), ("atol", atol), ("eps", eps)) if v is not None}
    x = np.abs(x) + 1.0 if x.dtype.kind == "f" and x.size else x
    out = call(tv.gradcheck, lambda x: tv.ops.sum(wrong(x)), x, raise_exception=False, **kw)
    tight = all(isinstance(v, int | float) and v < 0.1 for v in kw.values())
    if not isinstance(out, Exception) and x.dtype.kind == "f" and x.size and tight:
        assert not out.ok, "a wrong derivative passed"


XPS = st.sampled_from([np, array_api_strict, "numpy", None, 3])
DEVICES = st.sampled_from([None, "cpu", "device1", array_api_strict.Device("device1"), 3])


@given(xp=XPS, device=DEVICES, what=st.sampled_from(["model", "array", "list", "fn"]))
def test_to_moves_or_refuses(xp, device, what):
    x = {"model": model(), "array": np.ones(3), "list": [1.0], "fn": tv.mse}[what]
    call(tv.to, xp, x, device=device)


@given(
    loss=st.sampled_from([tv.mse, lambda m, x, y: tv.mse(m(x), y), 3, "mse", None]),
    target=st.sampled_from(["model", "array", "fn", "none"]),
    state=st.sampled_from(["state", "rule", "none"]),
)
def test_compile_compiles_or_refuses_at_once(loss, target, state):
    m = model()
    x = {"model": m, "array": np.ones(3), "fn": tv.mse, "none": None}[target]
    s = {"state": tv.setup(tv.Descent(0.1), m), "rule": tv.Descent(0.1), "none": None}[state]
    step = call(tv.compile, loss, x, s)
    if not isinstance(step, Exception):
        call(step, np.ones((2, 4)), np.zeros((2, 4)))


@given(
    path=st.sampled_from(["m.npz", "missing/m.npz", ".", "m"]),
    other=st.sampled_from(["same", "wider", "f32", "dense", "none"]),
)
def test_save_and_load_round_trip_or_refuse(path, other, tmp_path_factory):
    folder = tmp_path_factory.mktemp("io")
    m = model()
    saved = call(tv.save, folder / path, m)
    fresh = {
        "same": model(5),
        "wider": tv.Chain(tv.Dense(2, 4, rng=0), tv.Dense(4, 2, rng=1)),
        "f32": tv.f32(model(5)),
        "dense": tv.Dense(2, 3),
        "none": None,
    }[other]
    loaded = call(tv.load, folder / path, fresh)
    if not isinstance(saved, Exception) and not isinstance(loaded, Exception):
        assert other in ("same", "f32")


# --- the CLI: every command and flag ------------------------------------------------------------
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?: (\{[^}]*\}|[A-Z][A-Z_]*|tcp://HOST:PORT))?")
SKIPPED = {"--help", "--out", "--config", "--dask", "--quiet", "--quick", "--no-plots", "--plots"}
VALUES = ["0", "1", "2", "3", "-1", "0.5", "1e-3", "nan", "inf", "abc", "", "0-1", "auto", "2,3"]


def flags_of(command):
    """(flag, choices or None, takes a value) of every option in ``tinyvec CMD --help``."""
    result = subprocess.run(
        [sys.executable, "-m", "tinyvec.cli", command, "--help"], capture_output=True, text=True
    )
    found = {}
    for flag, meta in FLAG.findall(result.stdout):
        if flag in SKIPPED or flag in found:
            continue
        choices = tuple(meta[1:-1].split(",")) if meta.startswith("{") else None
        found[flag] = (choices, bool(meta))
    return found


FLAGS = {command: flags_of(command) for command in COMMANDS}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(FLAGS)))
    argv = [command]
    for flag, (choices, takes_value) in draw(
        st.lists(
            st.sampled_from(sorted(FLAGS[command].items())), max_size=4, unique_by=lambda f: f[0]
        )
    ):
        argv.append(flag)
        if takes_value:
            pool = [*choices, "bogus"] if choices else VALUES
            argv.append(draw(st.sampled_from(pool)))
    return argv


# small enough that each accepted command line runs in about a second
TINY = {
    "demo": ["--epochs", "1"],
    "eigen": ["--steps", "20", "--probe", "40", "--analysis", "50", "--tail", "10"],
    "analyze": ["--steps", "20", "--n", "16"],
    "collapse": ["--epochs", "1", "--width", "8"],
    "compensation": ["--points", "16", "--epochs-sample", "1", "--epochs-batch", "1"],
    "bench": ["--rounds", "1", "--block", "2"],
    "sharpness": [
        *("--steps", "20", "--every", "10", "--sgd-epochs", "2", "--sgd-every", "1"),
        *("--per-class", "2", "--points", "8"),
    ],
}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(argv=command_lines())
def test_every_command_line_runs_or_is_refused_in_one_line(argv, tmp_path_factory, capsys):
    command = argv[0]
    out = tmp_path_factory.mktemp("cli") / "out"
    fixed = [*TINY[command], "--quick"]
    if command != "bench":
        fixed += ["--out", str(out), "--no-plots", "--quiet"]
    flags = set(argv[1:])
    full = [
        command,
        *[a for i, a in enumerate(fixed) if not (a in flags or (i and fixed[i - 1] in flags))],
        *argv[1:],
    ]
    if "--seeds" in flags:
        full += ["--jobs", "1"]
    if os.environ.get("TINYVEC_FUZZ_LOG"):  # (to find a command line that kills the run)
        with open(os.environ["TINYVEC_FUZZ_LOG"], "a") as log:
            print(" ".join(full), file=log, flush=True)
    if command == "bench":  # (it re-executes its process with one thread per library)
        done = subprocess.run(
            [sys.executable, "-m", "tinyvec.cli", *full], capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        status, err = done.returncode, done.stderr
    else:
        try:
            status = main(full)
        except BaseException as e:  # anything escaping main is the finding
            pytest.fail(f"tinyvec {' '.join(full)} raised {type(e).__name__}: {e}")
        err = capsys.readouterr().err
    assert status in (0, 2), (full, status, err)
    assert "Traceback" not in err, (full, err)
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tinyvec {command}: error: "), (full, err)


@settings(max_examples=3 if settings().max_examples < 50 else 20)
@given(
    command=st.sampled_from(["demo", "eigen", "analyze", "compensation"]),
    delay=st.floats(0.5, 4.0),
)
def test_ctrl_c_at_any_moment_ends_in_one_line_and_status_130(command, delay, tmp_path_factory):
    """The moments are those of the command: the clock starts once the child has imported
    tinyvec (a Ctrl-C while Python itself starts and imports gets Python's own traceback, as
    for any Python program; under load that took over the 0.5 s this test once started at)."""
    out = tmp_path_factory.mktemp("sigint") / "out"
    args = [command, *TINY[command], "--quick", "--out", str(out), "--no-plots", "--quiet"]
    run = ("import sys, tinyvec.cli; print('imported', flush=True); "
           f"sys.exit(tinyvec.cli.main({args!r}))")  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-c", run], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "imported\n"
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode in (0, 130, -signal.SIGINT), (child.returncode, err)
    assert "Traceback" not in err, err
    if child.returncode == 130:
        assert err.strip().splitlines()[-1] == f"tinyvec {command}: interrupted", err
        # an interrupted run leaves no half-written run folder behind
        assert not out.exists() or (out / "config.json").exists()


def test_every_command_has_a_tiny_run():
    """A command added to the CLI needs its small run here, or the fuzz fails on it by chance."""
    assert set(TINY) == set(COMMANDS)
