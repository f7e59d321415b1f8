"""Random networks for the tests that compare two ways of computing the same step
(`tests/optimise/test_compiled.py`, `tests/layers/test_fused.py`): a hypothesis strategy for
their architecture, a builder, and every number a step leaves behind."""

import numpy as np
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy

SIGMAS = [tv.identity, tv.tanh, tv.atan, tv.relu, tv.sigmoid, tv.leakyrelu, tv.softplus, tv.gelu]
RULES = {
    "Descent": lambda: tv.Descent(0.05),
    "Momentum": lambda: tv.Momentum(0.05, 0.9),
    "Nesterov": lambda: tv.Nesterov(0.05, 0.5),
    "Adam": lambda: tv.Adam(0.01),
    "AdamW": lambda: tv.AdamW(0.01),
    "ClipNorm+Descent": lambda: tv.OptimiserChain(tv.ClipNorm(0.5), tv.Descent(0.1)),
    "WeightDecay+Momentum": lambda: tv.OptimiserChain(tv.WeightDecay(1e-3), tv.Momentum(0.05)),
}


# the δ-rules the step tests draw, and the optimisers δ-rules accept (a step size α)
DELTAS = {
    "none": lambda: None,
    "Compensation": lambda: tv.Compensation(0.3),
    "Compensation-first-order": lambda: tv.Compensation(0.3, "first_order"),
    "Orthogonalization": lambda: tv.Orthogonalization(1e-3),
    "both": lambda: [tv.Compensation(0.3), tv.Orthogonalization(1e-3)],
    "over-time": lambda: tv.OrthogonalizationOverTime(3),
}
LINEAR = ["Descent", "Momentum", "Nesterov", "WeightDecay+Momentum"]


@st.composite
def architectures(draw, depth=0):
    """A description of a model as nested tuples; built twice into identical models."""
    n = draw(st.integers(1, 3))
    blocks = []
    for _ in range(n):
        kind = draw(st.sampled_from(["dense", "skip+", "skipvcat", "par+", "parvcat", "chain"]))
        if depth >= 2 and kind == "chain":
            kind = "dense"
        sigma = draw(st.integers(0, len(SIGMAS) - 1))
        bias = draw(st.booleans())
        width = draw(st.integers(1, 4))
        blocks.append(
            (kind, sigma, bias, width, draw(architectures(depth + 1)) if kind == "chain" else None)
        )
    return blocks


def build(blocks, features, rng, sigmas=SIGMAS):
    """The model of ``blocks`` on ``features`` inputs, and its number of outputs; a block's σ
    is ``sigmas[its index]``."""
    layers = []
    for kind, sigma, bias, width, inner in blocks:
        s = sigmas[sigma]
        r = int(rng.integers(1 << 30))
        if kind == "dense":
            layers.append(tv.Dense(features, width, s, bias=bias, rng=r))
            features = width
        elif kind == "skip+":
            layers.append(
                tv.SkipConnection(tv.Dense(features, features, s, bias=bias, rng=r), tv.add)
            )
        elif kind == "skipvcat":
            layers.append(
                tv.SkipConnection(tv.Dense(features, width, s, bias=bias, rng=r), tv.vcat)
            )
            features += width
        elif kind == "par+":
            layers.append(
                tv.Parallel(
                    tv.add,
                    tv.Dense(features, width, s, bias=bias, rng=r),
                    tv.Dense(features, width, rng=r + 1),
                )
            )
            features = width
        elif kind == "parvcat":
            layers.append(
                tv.Parallel(
                    tv.vcat,
                    tv.Dense(features, width, s, bias=bias, rng=r),
                    tv.Dense(features, 2, rng=r + 1),
                )
            )
            features = width + 2
        else:
            chain, features = build(inner, features, rng, sigmas)
            layers.append(chain)
    return tv.Chain(*layers), features


def model_from(blocks, seed):
    body, features = build(blocks, 3, np.random.default_rng(seed))
    return tv.Chain(body, tv.Dense(features, 2, rng=seed))


def records(model):
    """Every number a step leaves behind: parameters, step records, Dense records."""
    out = {}
    for path, layer, name in tv.trainables(model):
        out[path] = to_numpy(getattr(layer, name)).tobytes()
        step = getattr(layer, "step", {})  # (a layer of one's own has none before its first)
        out[path + " step"] = to_numpy(step[name]).tobytes() if name in step else None
    for k, d in enumerate(tv.dense_layers(model)):
        for what in ("input", "preact", "output", "delta", "delta_used"):
            value = getattr(d, what)
            out[f"{k} {what}"] = None if value is None else to_numpy(value).tobytes()
    return out


def state_bytes(state, model):
    out = []
    for path, _, _ in tv.trainables(model):
        leaf = state.tree[path]
        stack = [leaf.state]
        while stack:
            s = stack.pop()
            if isinstance(s, tuple):
                stack.extend(s)
            elif s is not None:
                out.append(np.asarray(to_numpy(s) if hasattr(s, "shape") else s).tobytes())
    return out


def general_update(state, model, grads):
    """`tv.update` on the reference road (`tinyvec.fast.off`), not the program it writes."""
    with tv.fast.off():
        tv.update(state, model, grads)


def raising(rule, k, error):
    """``rule`` (an optimiser rule) that raises ``error`` at its k-th parameter (counting from
    1) once armed with ``rule.calls = 0``; ``rule.calls = None`` disarms it. (Its own apply
    does not say it is elementwise: `update` calls it once per parameter.)"""

    class Raising(type(rule)):
        def apply(self, state, x, dx):
            if self.calls is not None:
                self.calls += 1
                if self.calls == k:
                    raise error
            return super().apply(state, x, dx)

    rule.__class__, rule.calls = Raising, None
    return rule


HOLDS = ["nothing", "parameters", "views", "records"]


def hold(model, what, held):
    """Keep references, as a user may, to what a step left in ``model`` (``what``: one of
    `HOLDS`), each with its bytes now, in ``held``: `changed` then says whether a later step
    wrote into any of them (value semantics: it must not)."""
    arrays = []
    for _, layer, name in tv.trainables(model):
        if what in ("parameters", "views"):
            a = getattr(layer, name)
            arrays.append(a if what == "parameters" else a[...])  # (a view of its memory)
        elif what == "records":
            arrays.append(getattr(layer, "step", {}).get(name))
    if what == "records":
        for d in tv.dense_layers(model):
            arrays += [d.input, d.preact, d.output, d.delta, d.delta_used]
    held += [(a, to_numpy(a).tobytes()) for a in arrays if a is not None]


def changed(held):
    """How many of the arrays `hold` kept no longer have the bytes they had."""
    return sum(to_numpy(a).tobytes() != kept for a, kept in held)
