"""The networks that `tinyvec bench` times (as layer specs) and tinyvec's training steps on
them: the default step, the compiled step (`tv.compile`), stacks of E runs (`tv.stack`), the
step with each δ-rule, and a gradient against a Hessian-vector product. Each ``*_step``
returns ``step()`` with ``step.reset()``, which puts the weights and the optimiser state back
(outside the timing); the same steps written by hand, without tinyvec, are in
`tinyvec.experiments.baselines`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from .baselines import LR


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
    # a small step, and blocks restarted from the initial weights (`bench.time_steps`): compensated
    # steps on one batch diverge after thousands of them
    steps = {n: tinyvec_step(spec, x, y, "float64", d, lr=1e-4) for n, d in rules.items()}
    steps.update(
        {
            f"{n}, compiled": compiled_step(spec, x, y, "float64", d, lr=1e-4)
            for n, d in rules.items()
        }
    )
    return steps


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
