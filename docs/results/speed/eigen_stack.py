"""``tinyvec eigen --seeds`` one by one (``--stack 1``) against stacked (``--stack E``): the
wall and CPU time of each command (its workers' included), run alternately in fresh
processes (one BLAS thread, ``--jobs 1`` unless given), and whether the stacked sweep wrote the one-by-one sweep's files (every byte,
or for the files that hold run times, every value but those).

    python docs/results/speed/eigen_stack.py --rounds 3 -- --quick --seeds 0-7 --no-plots
    python docs/results/speed/eigen_stack.py --stack 8 -- --seeds 0-7 --steps 1000 --no-plots

Everything after ``--`` goes to ``tinyvec eigen``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinyvec.experiments.runfile import RUN_TIME_FIELDS

TIMED = ("summary.json", "summary.csv", "summary.md", "runs.jsonl", "config.json")


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``python -m tinyvec eigen argv`` in a fresh process."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tinyvec", "eigen", *argv], env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def without_run_times(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_run_times(v) for k, v in value.items()
                if k not in RUN_TIME_FIELDS and k != "out"}  # fmt: skip
    return [without_run_times(v) for v in value] if isinstance(value, list) else value


def differences(alone: Path, stacked: Path) -> list[str]:
    """The files of the two sweeps that differ (run times and the run folders aside)."""
    files = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(stacked) for p in stacked.rglob("*") if p.is_file()):
        return ["(other files)"]
    out = []
    for name in files:
        a, b = alone / name, stacked / name
        if name.name == "summary.json":
            same = without_run_times(json.loads(a.read_text())) == without_run_times(
                json.loads(b.read_text())
            )
        elif name.name == "runs.jsonl":
            lines = [sorted(json.dumps(without_run_times(json.loads(x)), sort_keys=True)
                            for x in p.read_text().splitlines()) for p in (a, b)]  # fmt: skip
            same = lines[0] == lines[1]
        elif name.name in TIMED:
            continue  # (summary.md and .csv: their steps/CPU-s column; config.json: --out)
        else:
            same = a.read_bytes() == b.read_bytes()
        if not same:
            out.append(str(name))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="alternating pairs (default 2)")
    p.add_argument("--stack", type=int, default=32, help="E of the stacked sweep (32)")
    p.add_argument("eigen", nargs=argparse.REMAINDER, help="-- then tinyvec eigen's flags")
    args = p.parse_args()
    flags = [a for a in args.eigen if a != "--"] + ["--quiet"]
    flags += [] if "--jobs" in flags else ["--jobs", "1"]
    times: dict[str, list[tuple[float, float]]] = {"alone": [], "stacked": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            order = ("alone", "stacked") if r % 2 == 0 else ("stacked", "alone")
            for which in order:
                stack = "1" if which == "alone" else str(args.stack)
                out = Path(d) / f"{which}-{r}"
                times[which].append(timed([*flags, "--stack", stack, "--out", str(out)]))
        diff = differences(Path(d) / "alone-0", Path(d) / "stacked-0")
    for which, ts in times.items():
        walls, cpus = [t[0] for t in ts], [t[1] for t in ts]
        print(f"{which:8} wall {' '.join(f'{w:.2f}' for w in walls)} s (median "
              f"{statistics.median(walls):.2f}), CPU {' '.join(f'{c:.2f}' for c in cpus)} s "
              f"(median {statistics.median(cpus):.2f})")  # fmt: skip
    ratio = statistics.median(t[1] for t in times["alone"]) / statistics.median(
        t[1] for t in times["stacked"]
    )
    print(f"CPU time, one by one / stacked: {ratio:.2f}×")
    print("files: the same" if not diff else f"files that differ: {', '.join(diff)}")
    return 0 if not diff else 1


if __name__ == "__main__":
    sys.exit(main())
