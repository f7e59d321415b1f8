"""``tinyvec bench``: the time of one training step (forward, loss, backward, update) for
tinyvec (the default step and `tv.compile`) and for the same step written by hand in NumPy
(and PyTorch eager, JAX jit when installed), measured in one process on one core.

One core: the command re-runs itself with one BLAS thread (OPENBLAS/OMP/MKL_NUM_THREADS=1),
XLA's CPU matrix kernels single-threaded (``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``;
``intra_op_parallelism_threads`` is not an XLA flag) and, where the OS allows, the whole
process pinned to one CPU (``os.sched_setaffinity``), which holds every library's threads —
NumPy's, PyTorch's (also ``torch.set_num_threads(1)``) and XLA's — to that one core.

Blocks of steps of each implementation are interleaved, so a slow moment of the machine
hits all of them; the table shows the median block in µs/step and its ratio to NumPy. Every
block starts from the implementation's initial weights and optimiser state (restored outside
the timing) and takes at most `MAX_BLOCK_STEPS` steps: all blocks time the same stretch of
the same trajectory, however fast the machine, and no block trains on one batch for so long
that the weights diverge (the compensated step on the seed network did, between 8,000 and
10,000 steps). The peak memory (RSS) of each implementation on network (b) is measured in a
fresh process each.

"tinyvec compiled" is ``tv.compile(tv.mse, model, state)``, whose step writes the loss in;
"tinyvec compiled, any loss" is ``tv.compile(lambda m, x, y: tv.mse(m(x), y), …)``, whose
step runs the loss function on the model (the same numbers). The networks and tinyvec's steps
are in `tinyvec.experiments.bench_steps`, the steps written by hand in
`tinyvec.experiments.baselines`.

Networks (loss: mse, plain gradient descent):
  (a) the seed network: Chain(Dense(20,40,atan), SkipConnection(Dense(40,40,atan),+)×3,
      Dense(40,3,atan), Dense(3,1)), batch 20, float64;
  (b) 256→512→512→512→512→10 with ReLU, batch 256, float32.

Then the step with each δ-rule against the plain tinyvec step, on the seed network and on a
256-wide ReLU network (256→256→256→256→10, batch 256, float64).

Then second order on the seed network and on the 256-wide ReLU network (batch 256, float64):
one exact Hessian-vector product (``tv.hvp``) against one gradient (``tv.gradient``, default,
and on the reference road, ``tv.fast.off()``, where the Hessian-vector product runs).
"""

from __future__ import annotations

import functools
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from .baselines import jax_step, jax_vmap_step, numpy_stack_step, numpy_step, torch_step
from .bench_steps import (
    compiled_step,
    curvature_steps,
    deltarule_steps,
    make_data,
    seed_spec,
    stack_data,
    tinyvec_stack_compiled_step,
    tinyvec_stack_step,
    tinyvec_step,
    wide_spec,
)
from .common import StudyParser
from .flags import positive_float, positive_int

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MAX_BLOCK_STEPS = 1000  # steps of one block: the trajectory every block times, from the start


XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def _one_thread(argv: list[str]) -> str:
    """Re-run this command with one BLAS thread and single-threaded XLA kernels (the variables
    only act before NumPy and JAX load), then pin the process to one CPU; says which."""
    if not (all(os.environ.get(v) == "1" for v in THREAD_VARS) and _xla_pinned()):
        env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()
        os.execve(sys.executable, [sys.executable, "-m", "tinyvec.experiments.bench", *argv], env)
    return pin_one_cpu()


def _xla_pinned() -> bool:
    return XLA_ONE_THREAD in os.environ.get("XLA_FLAGS", "")


def pin_one_cpu() -> str:
    """Pin this process (all its threads, present and future) to one CPU; says which."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS)"
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu} of {len(cpus)}"


STACK_IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "tinyvec stack": tinyvec_stack_step,
    "tinyvec stack, compiled": tinyvec_stack_compiled_step,
    "numpy stack (by hand)": numpy_stack_step,
    "jax jit(vmap)": jax_vmap_step,
}


def stack_benchmark(
    E: int, batch: int, rounds: int, block_s: float
) -> list[tuple[str, float, float]]:
    """Per run: each stacked step's time / E, against one hand-written NumPy run (the seed
    network, float64)."""
    spec = seed_spec()
    x1, y1 = make_data(spec, batch, "float64")
    steps = {"numpy (by hand), one run": numpy_step(spec, x1, y1, "float64")}
    x, y = stack_data(spec, E, batch, "float64")
    for name, make in STACK_IMPLEMENTATIONS.items():
        step = make(spec, x, y, "float64")
        if step is not None:
            steps[name] = step
    times = time_steps(steps, rounds, block_s, max_steps=MAX_BLOCK_STEPS // 4)
    base = times["numpy (by hand), one run"]
    per_run = {k: t if k.endswith("one run") else t / E for k, t in times.items()}
    return [(name, t, t / base) for name, t in per_run.items()]


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "numpy (by hand)": numpy_step,
    "tinyvec": tinyvec_step,
    "tinyvec compiled": compiled_step,
    "tinyvec compiled, any loss": functools.partial(compiled_step, any_loss=True),
    "pytorch eager": torch_step,
    "jax jit": jax_step,
}


def time_steps(
    steps: dict[str, Callable[[], Any]],
    rounds: int,
    block_s: float,
    max_steps: int = MAX_BLOCK_STEPS,
) -> dict[str, float]:
    """Median µs/step over ``rounds`` interleaved blocks of about ``block_s`` seconds (at most
    ``max_steps`` steps) each. Every block starts with ``step.reset()`` (untimed), so each
    block of an implementation takes the same steps from its initial weights."""
    sizes = {}
    for name, step in steps.items():  # warm up, and size a block
        step.reset()  # type: ignore[attr-defined]
        step()
        t0, n = time.perf_counter(), 0
        while n < max_steps and time.perf_counter() - t0 < block_s:
            step()
            n += 1
        sizes[name] = max(n, 1)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            step.reset()  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            for _ in range(sizes[name]):
                step()
            samples[name].append((time.perf_counter() - t0) / sizes[name] * 1e6)
    return {name: statistics.median(s) for name, s in samples.items()}


def benchmark(
    spec, batch: int, dtype: str, rounds: int, block_s: float
) -> list[tuple[str, float, float]]:
    x, y = make_data(spec, batch, dtype)
    steps = {}
    for name, make in IMPLEMENTATIONS.items():
        step = make(spec, x, y, dtype)
        if step is not None:
            steps[name] = step
    times = time_steps(steps, rounds, block_s)
    base = times["numpy (by hand)"]
    return [(name, t, t / base) for name, t in times.items()]


def deltarule_benchmark(
    spec, batch: int, rounds: int, block_s: float
) -> list[tuple[str, float, float]]:
    """The tinyvec step with each δ-rule, and its ratio to the plain step (targets of issue 9:
    compensation ≤ 1.6×, orthogonalization ≤ 2×)."""
    times = time_steps(deltarule_steps(spec, batch), rounds, block_s)
    return [(name, t, t / times["plain"]) for name, t in times.items()]


def curvature_benchmark(
    spec, batch: int, rounds: int, block_s: float
) -> list[tuple[str, float, float]]:
    """µs per gradient and per Hessian-vector product, and the ratio to one gradient (issue 22:
    an hvp costs at most about 4 gradients)."""
    times = time_steps(curvature_steps(spec, batch), rounds, block_s)
    return [(name, t, t / times["gradient"]) for name, t in times.items()]


def peak_rss(name: str, steps: int = 20) -> float:
    """Peak resident memory (MB) of a fresh process that imports the libraries, builds network
    (b) and takes ``steps`` steps of implementation ``name`` (NaN when it is not installed)."""
    import json
    import subprocess

    # VmHWM: the high-water mark of this process's own memory (ru_maxrss would carry over the
    # parent's, which has PyTorch and JAX loaded, through fork and exec on Linux)
    code = (
        "import json, resource, sys\n"
        "from tinyvec.experiments import bench, bench_steps\n"
        "spec = bench_steps.wide_spec()\n"
        "x, y = bench_steps.make_data(spec, 256, 'float32')\n"
        f"step = bench.IMPLEMENTATIONS[{name!r}](spec, x, y, 'float32')\n"
        "if step is None: print('null'); sys.exit()\n"
        f"for _ in range({steps}): step()\n"
        "try:\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
        "    print(json.dumps(int(status.split()[0]) / 1024))\n"
        "except (OSError, IndexError):\n"
        "    print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    value = json.loads(out.stdout.strip().splitlines()[-1])
    return float("nan") if value is None else float(value)


def print_table(title: str, rows: list[tuple[str, float, float]], baseline: str = "NumPy") -> None:
    print(f"\n{title}")
    print(f"| implementation | µs/step | ratio to {baseline} |")
    print("|---|---:|---:|")
    for name, t, r in rows:
        print(f"| {name} | {t:,.1f} | {r:.2f}× |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = StudyParser(prog="tinyvec bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rounds", type=positive_int, default=15, help="interleaved blocks per implementation"
    )
    p.add_argument("--block", type=positive_float, default=0.2, help="seconds per block")
    p.add_argument("--quick", action="store_true", help="3 short rounds (a smoke test)")
    p.add_argument(
        "--stacks",
        action="store_true",
        help="only the stacks (tv.stack): E = 8, 32, 150 seed networks at batch 1 and 20, "
        "per run, with JAX jit(vmap) when installed",
    )
    args = p.parse_args(argv)
    pinned = _one_thread(argv)
    rounds, block = (3, 0.02) if args.quick else (args.rounds, args.block)
    print(
        f"one core: BLAS threads 1, XLA_FLAGS={XLA_ONE_THREAD}, process {pinned}; "
        "median of interleaved blocks; loss mse, Descent"
    )
    if args.stacks:
        for E, batch in itertools.product((8, 32, 150), (1, 20)):
            rows = stack_benchmark(E, batch, rounds, block)
            print_table(f"stack of {E} seed networks, batch {batch}, float64, µs per run", rows,
                        baseline="one NumPy run")  # fmt: skip
        return 0
    print_table(
        "(a) seed network, batch 20, float64",
        benchmark(seed_spec(), 20, "float64", rounds, block),
    )
    print_table(
        "(b) 256→512→512→512→512→10 ReLU, batch 256, float32",
        benchmark(wide_spec(), 256, "float32", rounds, block),
    )
    wide_256 = [(256, 256, "relu", False)] * 3 + [(256, 10, "identity", False)]
    for title, spec, batch in (
        ("δ-rules, seed network, batch 20, float64", seed_spec(), 20),
        ("δ-rules, 256→256→256→256→10 ReLU, batch 256, float64", wide_256, 256),
    ):
        rows = deltarule_benchmark(spec, batch, rounds, block)
        print_table(title, rows, baseline="the plain step")
    for title, spec, batch in (
        ("seed network, batch 20", seed_spec(), 20),
        ("256→256→256→256→10 ReLU, batch 256", wide_256, 256),
    ):
        print_table(
            f"second order, {title}, float64: one hvp against one gradient",
            curvature_benchmark(spec, batch, rounds, block),
            baseline="the gradient",
        )
    print("\npeak RSS, network (b), a fresh process each (imports included)")
    print("| implementation | MB | ratio to NumPy |")
    print("|---|---:|---:|")
    base = peak_rss("numpy (by hand)", 3 if args.quick else 20)
    for name in IMPLEMENTATIONS:
        mb = base if name == "numpy (by hand)" else peak_rss(name, 3 if args.quick else 20)
        print(f"| {name} | {mb:,.0f} | {mb / base:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
