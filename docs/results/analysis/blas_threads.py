"""Before and after one BLAS thread: the same code with BLAS at its default thread count (2 on
the project's machine) or at 1, three interleaved repetitions, the median reported.

    python docs/results/analysis/blas_threads.py
"""

import statistics
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits

from tinyvec.experiments import analyze, collapse, compensation, compensation_runs
from tinyvec.experiments.sweep import LocalProcesses, run_sweep


def run_two_threads(spec: dict) -> dict:
    """A compensation run with BLAS at 2 threads (the runner sets 1 around each run)."""
    with threadpool_limits(limits=2):
        return compensation_runs.run_one(spec)


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def main() -> None:
    data = collapse.load_digits_split(0)
    quick = ["--quick", "--epochs-sample", "60", "--epochs-batch", "120"]
    specs = compensation.grid(compensation.config(compensation.parser().parse_args(quick)))
    seconds: dict[str, list[float]] = {}
    print("default BLAS threads:", threadpool_info()[0]["num_threads"])
    for _ in range(3):
        for n in (2, 1):
            with threadpool_limits(limits=n):
                t = timed(lambda: collapse.train_run("mse", data, epochs=10))
                seconds.setdefault(f"collapse, {n} thread(s)", []).append(t)
                t = timed(lambda: analyze.run(steps=300))
                seconds.setdefault(f"analyze, {n} thread(s)", []).append(t)
            fn = run_two_threads if n == 2 else compensation_runs.run_one
            with tempfile.TemporaryDirectory() as d, LocalProcesses(2) as ex:
                t = timed(lambda: run_sweep(fn, specs, Path(d), executor=ex, progress=False))
                seconds.setdefault(f"compensation sweep, {n} thread(s)", []).append(t)
    for name, v in seconds.items():
        print(f"{name}: median {statistics.median(v):.2f} s ({', '.join(f'{x:.2f}' for x in v)})")


if __name__ == "__main__":
    main()
