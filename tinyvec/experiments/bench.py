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
step runs the loss function on the model (the same numbers).

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

from .baselines import LR, jax_step, jax_vmap_step, numpy_stack_step, numpy_step, torch_step
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


# --- the networks, as layer specs: (in, out, activation name, skip?) ----------------------
def seed_spec() -> list[tuple[int, int, str, bool]]:
    return (
        [(20, 40, "atan", False)]
        + [(40, 40, "atan", True)] * 3
        + [
            (40, 3, "atan", False),
            (3, 1, "identity", False),
        ]
    )


def wide_spec() -> list[tuple[int, int, str, bool]]:
    sizes = [256, 512, 512, 512, 512]
    return [(a, b, "relu", False) for a, b in itertools.pairwise(sizes)] + [
        (512, 10, "identity", False)
    ]


def make_data(spec, batch: int, dtype: str, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((spec[0][0], batch)).astype(dtype)
    y = rng.standard_normal((spec[-1][1], batch)).astype(dtype)
    return x, y


# --- implementations: each returns a function doing one training step ---------------------
def tinyvec_model(spec, dtype: str) -> Any:
    import tinyvec as tv

    layers = []
    for k, (i, o, act, skip) in enumerate(spec):
        d = tv.Dense(i, o, act, rng=k)
        layers.append(tv.SkipConnection(d, tv.add) if skip else d)
    model = tv.Chain(*layers)
    return tv.f32(model) if dtype == "float32" else model


def tinyvec_step(spec, x, y, dtype: str, delta: Any = None, lr: float = LR) -> Callable[[], Any]:
    """The default step: ``withgradient`` then ``update``."""
    import tinyvec as tv

    model = tinyvec_model(spec, dtype)
    state = tv.setup(tv.Descent(lr), model, delta=delta)

    def step() -> None:
        _, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
        tv.update(state, model, grads)

    step.weights = lambda: [d.weight for d in tv.dense_layers(model)]  # type: ignore[attr-defined]
    step.reset = restorer(model, state)  # type: ignore[attr-defined]
    return step


def compiled_step(
    spec, x, y, dtype: str, delta: Any = None, lr: float = LR, any_loss: bool = False
) -> Callable[[], Any]:
    """The same step through `tv.compile` (bit-identical to `tinyvec_step`): of ``tv.mse``,
    which the step writes in, or (``any_loss``) of a loss function, which it runs."""
    import tinyvec as tv

    model = tinyvec_model(spec, dtype)
    state = tv.setup(tv.Descent(lr), model, delta=delta)
    loss = (lambda m, x, y: tv.mse(m(x), y)) if any_loss else tv.mse
    compiled = tv.compile(loss, model, state)

    def step() -> None:
        compiled(x, y)

    step.weights = lambda: [d.weight for d in tv.dense_layers(model)]  # type: ignore[attr-defined]
    step.reset = restorer(model, state)  # type: ignore[attr-defined]
    step.compiled = compiled  # type: ignore[attr-defined]
    return step


def restorer(model: Any, state: Any) -> Callable[[], None]:
    """A function that puts ``model``'s parameters and the optimiser ``state`` (each
    parameter's, and the δ-rules' memory) back to what they are now: copies made here, copied
    again at each call so that no step can change them. The parameters are replaced, not
    written into, as `tv.update` does, so the model's plan (and a compiled step) stays valid."""
    import copy

    import tinyvec as tv

    saved = [
        (layer, name, copy.deepcopy(getattr(layer, name)), leaf, copy.deepcopy(leaf.state))
        for path, layer, name in tv.trainables(model)
        for leaf in (state.tree[path],)
    ]
    transform = state.transform
    memory = copy.deepcopy(getattr(transform, "memory", None))

    def reset() -> None:
        for layer, name, value, leaf, leaf_state in saved:
            setattr(layer, name, copy.deepcopy(value))
            leaf.state = copy.deepcopy(leaf_state)
        if memory is not None:
            transform.memory = copy.deepcopy(memory)

    return reset


# --- stacks: E runs as one (tv.stack), per run ------------------------------------------------
def stack_data(spec, E: int, batch: int, dtype: str):
    """Each member's own batch: x (E, in, B), y (E, out, B)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((E, spec[0][0], batch)).astype(dtype)
    y = rng.standard_normal((E, spec[-1][1], batch)).astype(dtype)
    return x, y


def tinyvec_stack_step(spec, x, y, dtype: str) -> Callable[[], Any]:
    """E seed networks as one stack (`tv.stack`): ``withgradient`` of the E member losses, then
    ``update`` (η per member)."""
    import tinyvec as tv

    E = x.shape[0]
    model = tv.stack([tinyvec_model(spec, dtype) for _ in range(E)])
    state = tv.setup(tv.Descent([LR] * E), model)

    def step() -> None:
        _, grads = tv.withgradient(lambda m: tv.mse(m(x), y, members=True), model)
        tv.update(state, model, grads)

    step.reset = restorer(model, state)  # type: ignore[attr-defined]
    return step


def tinyvec_stack_compiled_step(spec, x, y, dtype: str) -> Callable[[], Any]:
    """The same stack and rule, its step ``tv.compile(tv.mse, stack, state)``: no graph, the
    gradients written straight into the (E, P) buffer that the written update steps."""
    import tinyvec as tv

    E = x.shape[0]
    model = tv.stack([tinyvec_model(spec, dtype) for _ in range(E)])
    state = tv.setup(tv.Descent([LR] * E), model)
    compiled = tv.compile(tv.mse, model, state)

    def step() -> None:
        compiled(x, y)

    step.reset = restorer(model, state)  # type: ignore[attr-defined]
    return step


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


def deltarule_steps(spec, batch: int) -> dict[str, Callable[[], Any]]:
    """The tinyvec step with each δ-rule (and plain), default and compiled, float64."""
    import tinyvec as tv

    rules = {
        "plain": None,
        "Compensation(0.2)": tv.Compensation(0.2),
        "Compensation(0.2, first_order)": tv.Compensation(0.2, "first_order"),
        "Orthogonalization(1e-3)": tv.Orthogonalization(1e-3),
        "Compensation + Orthogonalization": [tv.Compensation(0.2), tv.Orthogonalization(1e-3)],
    }
    x, y = make_data(spec, batch, "float64")
    # a small step, and blocks restarted from the initial weights (`time_steps`): compensated
    # steps on one batch diverge after thousands of them
    steps = {n: tinyvec_step(spec, x, y, "float64", d, lr=1e-4) for n, d in rules.items()}
    steps.update(
        {
            f"{n}, compiled": compiled_step(spec, x, y, "float64", d, lr=1e-4)
            for n, d in rules.items()
        }
    )
    return steps


def deltarule_benchmark(
    spec, batch: int, rounds: int, block_s: float
) -> list[tuple[str, float, float]]:
    """The tinyvec step with each δ-rule, and its ratio to the plain step (targets of issue 9:
    compensation ≤ 1.6×, orthogonalization ≤ 2×)."""
    times = time_steps(deltarule_steps(spec, batch), rounds, block_s)
    return [(name, t, t / times["plain"]) for name, t in times.items()]


def curvature_steps(spec, batch: int) -> dict[str, Callable[[], Any]]:
    """A gradient (default and on the reference road) and a Hessian-vector product of the mse
    at the initial weights of network ``spec``, float64 (nothing changes: no reset needed)."""
    import tinyvec as tv

    x, y = make_data(spec, batch, "float64")
    model = tinyvec_model(spec, "float64")

    def loss(m: Any) -> Any:
        return tv.mse(m(x), y)

    v = tv.gradient(loss, model)

    def gradient() -> None:
        tv.gradient(loss, model)

    def reference() -> None:
        with tv.fast.off():
            tv.gradient(loss, model)

    def hvp() -> None:
        tv.hvp(loss, model, v)

    steps: dict[str, Callable[[], Any]] = {
        "gradient": gradient,
        "gradient, reference road": reference,
        "hvp": hvp,
    }
    for step in steps.values():
        step.reset = lambda: None  # type: ignore[attr-defined]
    return steps


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
        "from tinyvec.experiments import bench\n"
        "spec = bench.wide_spec()\n"
        "x, y = bench.make_data(spec, 256, 'float32')\n"
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
