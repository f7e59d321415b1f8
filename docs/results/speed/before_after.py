"""Two versions of tinyvec in one process: the seed network's training step (batch 20,
float64, mse, Descent) of this checkout and of an earlier commit, timed in the same run.

`tinyvec bench` gives each version's ratio to hand-written NumPy in a process of its own; but
the NumPy step itself takes a few per cent more or less from one process to the next (where
its arrays land in memory), so two runs compare two baselines. Here both versions' steps and
one NumPy step take turns in interleaved blocks of one process (one BLAS thread, one CPU,
`tinyvec.experiments.bench.time_steps`), which is the "same run, before and after" of issue
18, item 7.

The earlier version comes from git (``git archive COMMIT tinyvec``) into a temporary folder,
as a package renamed ``tinyvec_before``: its absolute imports and the module names it writes
in strings are rewritten to that name (its relative imports need nothing). Its bench steps are
read where that version kept them (``tinyvec.experiments.bench_steps``, or ``bench`` before).

    python docs/results/speed/before_after.py a29a422 [--rounds 15]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
REPO = Path(__file__).resolve().parents[3]
RENAMED = "tinyvec_before"
# ``import tinyvec``, ``from tinyvec…``, ``…, tinyvec as tv`` and "tinyvec.x" in strings
IMPORTS = re.compile(r"(\bimport |\bfrom |, |[\"'])tinyvec\b(?!_)")


def unpack(commit: str, into: Path) -> None:
    """``tinyvec/`` of ``commit`` as the package ``into/tinyvec_before``."""
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "tinyvec"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        if hasattr(tarfile, "data_filter"):  # (Python 3.11.4 and later)
            archive.extractall(into, filter="data")
        else:  # pragma: no cover - our own repository's archive
            archive.extractall(into)
    package = into / RENAMED
    (into / "tinyvec").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(IMPORTS.sub(rf"\1{RENAMED}", text), encoding="utf-8")


def steps_of(package: str, spec, x, y) -> dict:
    """The default step, the compiled ``tv.mse`` step and the compiled loss-function step of
    the version imported as ``package``."""
    import importlib

    try:
        made = importlib.import_module(f"{package}.experiments.bench_steps")
    except ImportError:  # (before the bench was split in two)
        made = importlib.import_module(f"{package}.experiments.bench")
    return {
        "default": made.tinyvec_step(spec, x, y, "float64"),
        "compiled, tv.mse": made.compiled_step(spec, x, y, "float64"),
        "compiled, loss function": made.compiled_step(spec, x, y, "float64", any_loss=True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the earlier version: a commit, tag or branch")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved blocks per step")
    parser.add_argument("--block", type=float, default=0.2, help="seconds per block")
    args = parser.parse_args()
    if any(os.environ.get(v) != "1" for v in THREADS):  # must be set before NumPy loads
        os.environ.update(dict.fromkeys(THREADS, "1"))
        os.execv(sys.executable, [sys.executable, *sys.argv])

    sys.path.insert(0, str(REPO))  # this checkout's tinyvec, whatever is installed
    from tinyvec.experiments import baselines, bench, bench_steps

    with tempfile.TemporaryDirectory() as folder:
        unpack(args.commit, Path(folder))
        sys.path.insert(0, folder)
        print(f"{bench.pin_one_cpu()}; one BLAS thread; median of interleaved blocks")
        spec = bench_steps.seed_spec()
        x, y = bench_steps.make_data(spec, 20, "float64")
        before, after = steps_of(RENAMED, spec, x, y), steps_of("tinyvec", spec, x, y)
        steps = {"numpy (by hand)": baselines.numpy_step(spec, x, y, "float64")}
        steps.update({f"{name}, {args.commit}": step for name, step in before.items()})
        steps.update({f"{name}, this checkout": step for name, step in after.items()})
        times = bench.time_steps(steps, args.rounds, args.block)
    base = times["numpy (by hand)"]
    print("\nseed network, batch 20, float64")
    print("| step | µs/step | ratio to NumPy |")
    print("|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {t:,.1f} | {t / base:.2f}× |")
    print("\n| step | this checkout against " + args.commit + " |")
    print("|---|---:|")
    for name in before:
        ratio = times[f"{name}, this checkout"] / times[f"{name}, {args.commit}"]
        print(f"| {name} | {ratio:.3f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
