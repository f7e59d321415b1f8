"""Instructions per training step of the seed network (batch 20, float64), counted by
valgrind's callgrind: counts, not seconds, so the same on a loaded machine, for comparing two
versions of tinyvec (or a step with hand-written NumPy) when wall-clock timings are noise.

    python docs/results/speed/instructions.py numpy default compiled compiled-fn
    PYTHONPATH=/path/to/other/checkout python docs/results/speed/instructions.py compiled

Second order (issue 22): ``gradient`` (the default ``tv.gradient``), ``gradient-reference``
(the same in ``tv.fast.off()``) and ``hvp`` (one ``tv.hvp``) of the seed network's mse, as in
``tinyvec bench``'s second-order rows. Stacks (issue 21): ``stack-numpy``, ``stack``,
``stack-compiled`` and ``stack-compiled-fn``, 32 seed networks at batch 1 as in ``tinyvec
bench --stacks``.

Each count is (count of N steps − count of 0 steps) / N, after 50 warm-up steps, in a fresh
process under ``valgrind --tool=callgrind`` (about a minute per implementation).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

STEPS = 100
# a stack of 32 seed networks at batch 1, as in ``tinyvec bench --stacks``: by hand, the
# default step, compiled with tv.mse and compiled with a loss function of one's own
STACKS = ("stack-numpy", "stack", "stack-compiled", "stack-compiled-fn")
SECOND_ORDER = {
    "gradient": "gradient",
    "gradient-reference": "gradient, reference road",
    "hvp": "hvp",
}


def run(impl: str, n: int) -> None:
    """The measured process: 50 warm-up steps, then ``n`` steps of ``impl``."""
    import tinyvec as tv
    from tinyvec.experiments import baselines, bench_steps

    spec = bench_steps.seed_spec()
    x, y = bench_steps.make_data(spec, 20, "float64")
    if impl == "numpy":
        step = baselines.numpy_step(spec, x, y, "float64")
    elif impl in SECOND_ORDER:
        step = bench_steps.curvature_steps(spec, 20)[SECOND_ORDER[impl]]
    elif impl in STACKS:
        step = stack_step(impl)
    else:
        model = bench_steps.tinyvec_model(spec, "float64")
        state = tv.setup(tv.Descent(1e-6), model)  # a small step: the numbers stay finite
        if impl == "default":

            def step() -> None:
                tv.update(state, model, tv.gradient(lambda m: tv.mse(m(x), y), model))

        else:
            loss = tv.mse if impl == "compiled" else (lambda m, x, y: tv.mse(m(x), y))
            compiled = tv.compile(loss, model, state)

            def step() -> None:
                compiled(x, y)

    for _ in range(50 + n):
        step()


def stack_step(impl: str) -> Callable[[], Any]:
    import tinyvec as tv
    from tinyvec.experiments import bench_steps
    from tinyvec.experiments.baselines import LR, numpy_stack_step

    spec = bench_steps.seed_spec()
    x, y = bench_steps.stack_data(spec, 32, 1, "float64")
    if impl == "stack-numpy":
        return numpy_stack_step(spec, x, y, "float64")
    if impl == "stack":
        return bench_steps.tinyvec_stack_step(spec, x, y, "float64")
    if impl == "stack-compiled":
        return bench_steps.tinyvec_stack_compiled_step(spec, x, y, "float64")
    model = tv.stack([bench_steps.tinyvec_model(spec, "float64") for _ in range(32)])
    state = tv.setup(tv.Descent([LR] * 32), model)
    compiled = tv.compile(lambda m, x, y: tv.mse(m(x), y, members=True), model, state)
    return lambda: compiled(x, y)


def count(impl: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--run",
            impl,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    return int(re.search(r"Collected : (\d+)", out.stderr).group(1))


def main() -> int:
    if sys.argv[1:2] == ["--run"]:
        run(sys.argv[2], int(sys.argv[3]))
        return 0
    for impl in sys.argv[1:] or ["numpy", "default", "compiled", "compiled-fn"]:
        per_step = (count(impl, STEPS) - count(impl, 0)) / STEPS
        print(f"{impl:12s} {per_step / 1e6:.3f} M instructions per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
