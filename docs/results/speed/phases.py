"""Where one training step of the seed network spends its time, phase by phase.

`tinyvec bench` says how the whole step compares with hand-written NumPy; this script says
which part of it costs what, for whoever works on the speed: the written program's forward
and backward pass, the loss as a graph node or as its parts (`tv.compile(tv.mse, …)`), the
parameters as Tensors, the written update, what the default step adds to the compiled one
(the gradient Tree, built and read), and the bare pieces of a compiled `tv.mse` step called
with no check and no hold of Ctrl-C (the floor of a step that keeps every record and
replaces the parameters: the same forward pass, loss parts, backward pass into the gradient
buffer and flat update as the step), beside the look-ups and checks the step makes at every
call so that a model, input or optimiser state edited between steps is seen. Last, the two
halves of the default step, each called again and again, and one after the other on two
models that share no data: a piece that runs alone in a loop finds the processor's caches
and branch predictors trained on it alone, so the pieces measured alone add up to less than
the step (the last line says by how much). Each phase runs alone in a loop (median of
interleaved rounds, one BLAS thread, one CPU), with NumPy's whole step in the same rounds for
scale. Phases measured alone do not add up exactly to the step (caches, the allocator), and
the machine's speed varies: compare phases from one run only.

    python docs/results/speed/phases.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def median_us(phases: dict, rounds: int, block_s: float = 0.1) -> dict[str, float]:
    """µs per call of each phase: the median over ``rounds`` interleaved blocks."""
    sizes = {}
    for name, fn in phases.items():
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < block_s:
            fn()
            n += 1
        sizes[name] = n
    samples: dict[str, list[float]] = {name: [] for name in phases}
    for _ in range(rounds):
        for name, fn in phases.items():
            t0 = time.perf_counter()
            for _ in range(sizes[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / sizes[name] * 1e6)
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if any(os.environ.get(v) != "1" for v in THREADS):  # must be set before NumPy loads
        os.environ.update(dict.fromkeys(THREADS, "1"))
        os.execv(sys.executable, [sys.executable, *sys.argv])

    import tinyvec as tv
    from tinyvec.engine.losses import parts
    from tinyvec.engine.tensor import Tensor
    from tinyvec.experiments import baselines, bench, bench_steps
    from tinyvec.fast.chain import program_for
    from tinyvec.fast.plan import plan_of
    from tinyvec.fast.update_program import gradient_memory
    from tinyvec.fast.update_program import written as written_update
    from tinyvec.optimise.training import gradients_of

    bench.pin_one_cpu()
    spec = bench_steps.seed_spec()
    x, y = bench_steps.make_data(spec, 20, "float64")
    model = bench_steps.tinyvec_model(spec, "float64")
    state = tv.setup(tv.Descent(1e-6), model)  # a small step: thousands of steps stay finite

    def loss(m):
        return tv.mse(m(x), y)

    compiled = tv.compile(lambda m, x, y: tv.mse(m(x), y), model, state)
    compiled(x, y)
    plan = plan_of(model)
    program = next(iter(plan.programs.values()))  # the model's written forward and backward pass
    update = written_update(state, plan)  # `tv.update`'s written step
    params = program.params()
    out, saved = program.forward(x, *params)
    _, grads = gradients_of(loss, [model], plan.trainables)
    leaves = update.leaves(state.tree)
    tree = plan.tree(grads)
    numpy_step = baselines.numpy_step(spec, x, y, "float64")
    twin = bench_steps.tinyvec_model(spec, "float64")
    twin_state = tv.setup(tv.Descent(1e-6), twin)
    written = tv.compile(tv.mse, twin, twin_state)
    written(x, y)
    _, mse_forward, mse_vjp = parts(tv.mse)  # (its check: once per kind of arrays)

    def bare_pieces(m, st):
        """The pieces of ``tv.compile(tv.mse, m, st)``'s step, called one after the other with
        nothing in between (after one compiled step, which writes the programs)."""
        tv.compile(tv.mse, m, st)(x, y)
        plan = plan_of(m)
        program = next(iter(plan.programs.values()))
        update = written_update(st, plan)
        # the gradient buffer the step's backward pass writes into, and its parameters' views
        G, views = gradient_memory(plan, program.layout)

        def step() -> None:
            o, s = program.forward(x, *program.params())
            _, r = mse_forward(o, y)
            program.backward_into(mse_vjp(1.0, r), s, views)
            if not update.update(views, update.leaves(st.tree), (), True, G):
                raise RuntimeError("the written update declined: not the compiled step's road")

        return step, plan, update

    # the bare pieces compute what the compiled step computes, bit for bit
    a, b = (bench_steps.tinyvec_model(spec, "float64") for _ in "ab")
    a_state, b_state = tv.setup(tv.Descent(1e-6), a), tv.setup(tv.Descent(1e-6), b)
    a_step, _, _ = bare_pieces(a, a_state)
    b_step = tv.compile(tv.mse, b, b_state)
    b_step(x, y)
    for _ in range(3):
        a_step()
        b_step(x, y)

    def kept(layer) -> list[bytes]:  # its parameters, its records, its ΔW and Δb
        names = ("weight", "bias", "input", "preact", "output", "delta")
        return [getattr(layer, n).tobytes() for n in names] + [
            layer.step[n].tobytes() for n in ("weight", "bias")
        ]

    same = all(
        kept(la) == kept(lb) for la, lb in zip(tv.dense_layers(a), tv.dense_layers(b), strict=True)
    )
    print(f"the bare pieces take the compiled step's steps, bit for bit: {same}")
    if not same:  # then they are not the floor of that step: nothing to time
        return 1
    # a third model for them, so that the compiled step timed below keeps its own memory
    bare = bench_steps.tinyvec_model(spec, "float64")
    bare_state = tv.setup(tv.Descent(1e-6), bare)
    bare_step, bare_plan, bare_update = bare_pieces(bare, bare_state)

    def loss_parts() -> None:
        _, r = mse_forward(out, y)
        mse_vjp(1.0, r)

    kind = (type(out), out.dtype, out.shape, type(y), y.dtype, y.shape)

    def checks() -> None:  # what the compiled step looks up and checks besides (no arithmetic)
        plan_of(bare, bare_plan)  # the model's structure
        program_for(bare_plan, x)  # the program for this kind of input
        _ = (type(out), out.dtype, out.shape, type(y), y.dtype, y.shape) == kind  # the target's
        written_update(bare_state, bare_plan)  # the update program of this state
        bare_update.leaves(bare_state.tree)  # the Leafs, from the state's tree as it is now

    # two more models, which share no data: the default step's halves alone, and one after
    # the other (each model keeps its own parameters; the update steps fixed gradients)
    left, right = (bench_steps.tinyvec_model(spec, "float64") for _ in "lr")
    right_state = tv.setup(tv.Descent(1e-6), right)
    right_grads = tv.fmap(lambda a: a.copy(), tv.gradient(loss, right))

    def left_gradient() -> None:
        tv.gradient(loss, left)

    def right_update() -> None:
        tv.update(right_state, right, right_grads)

    def one_after_the_other() -> None:
        left_gradient()
        right_update()

    def reference_step() -> None:
        with tv.fast.off():
            tv.update(state, model, tv.gradient(loss, model))

    def loss_node() -> None:
        tv.mse(Tensor(out), y).backward()

    phases = {
        "NumPy, the whole step (scale)": numpy_step,
        "tinyvec default step": lambda: tv.update(state, model, tv.gradient(loss, model)),
        "tinyvec compiled step, tv.mse": lambda: written(x, y),
        "  its bare pieces (no checks, no hold of Ctrl-C)": bare_step,
        "  its look-ups and checks alone (no arithmetic)": checks,
        "    the loss's parts, forward and vjp": loss_parts,
        "tinyvec compiled step, a loss function": lambda: compiled(x, y),
        "  the gradient, as a list (gradients_of)": lambda: gradients_of(
            loss, [model], plan.trainables
        ),
        "    forward (written program)": lambda: program.forward(x, *params),
        "    backward (written program)": lambda: program.backward(out, saved),
        "    the loss as a graph node, forward and backward": loss_node,
        "  update (written program)": lambda: update.update(grads, leaves),
        "  update (written program), the gradients not checked": lambda: update.update(
            grads, leaves, (), True
        ),
        "  the Leafs read from the optimiser state's tree": lambda: update.leaves(state.tree),
        "what the default step adds:": lambda: None,
        "  the reference road's default step (tv.fast.off())": reference_step,
        "  the gradient as a Tree (plan.tree)": lambda: plan.tree(grads),
        "  the Tree read again (gather, in update)": lambda: update.gather(tree, state.tree),
        "the default step's halves, each alone and one after the other:": lambda: None,
        "  tv.gradient, called again and again": left_gradient,
        "  tv.update (another model), called again and again": right_update,
        "  the two, one after the other (no data shared)": one_after_the_other,
    }
    times = median_us(phases, args.rounds)
    print("seed network, batch 20, float64; µs per call, median of interleaved rounds")
    for name, t in times.items():
        print(f"{name:58s} {t:8.1f}")
    alone = (
        times["  tv.gradient, called again and again"]
        + times["  tv.update (another model), called again and again"]
    )
    after = times["  the two, one after the other (no data shared)"]
    print(f"{'  what running one after the other adds':58s} {after - alone:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
