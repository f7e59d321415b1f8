"""Vector analysis of one training step (science.md §1; seeds 000 and 004).

When every layer updates at once, the move of layer k's pre-activation on the same input
splits exactly (W^k, O^{k-1}: before the step; Δ: the step's change)::

    ΔA^k = ΔW^k O^{k-1} + Δb^k      own: layer k's own update
         + W^k ΔO^{k-1}              inherited: the training of the layers below
         + ΔW^k ΔO^{k-1}             second order

The measured ΔA^k needs the input fed twice, before and after the update: `decompose` runs
the second forward pass (after `tv.update`, the layers still hold the first one), `analyze_step`
does gradient, update and second pass in one call, and `VectorRecorder` does it inside
`tv.train`. The per-layer figures (`step_summary`):

- ``dA_norm``, ``own_norm``, ``inherited_norm``, ``second_norm``: Frobenius norms (whole batch);
- ``ratio`` ‖inherited‖/‖own‖; ``cos_own_inherited``; ``cos_total_delta`` cos(ΔA, −δ) and
  ``cos_own_delta`` cos(own, −δ) (1 for one sample and plain descent);
- ``residual`` ‖ΔA − (own + inherited + second)‖/‖ΔA‖: rounding only;
- ``o_norm2``, ``delta_norm2``: mean over the batch of ‖o_n‖², ‖δ_n‖²;
- ``grad_norm_mean``, ``grad_norm_max`` of the per-sample gradient norms
  (`per_sample_grad_norms`), ``coherence`` (`batch_coherence`), ``effective_rank``
  (`effective_rank`) of O^{k-1}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import namespace, to_numpy
from ..engine.tensor import no_grad
from ..layers import dense_layers
from ..measures import cos, norm
from ..optimise import update, withgradient
from ..recorder import Recorder
from .completion import preserved_forward


def per_sample_grad_norms(delta: Any, O: Any, *, bias: bool = True, mean_loss: bool = True) -> Any:
    """``‖∇_{W,b} ℓ_n‖`` for each sample n, from δ^k and O^{k-1} alone (no extra backward).

    ``∇_W ℓ_n = δ_n o_nᵀ`` is an outer product, so ``‖∇_W ℓ_n‖ = ‖δ_n‖ ‖o_n‖``; with the bias
    (``∇_b ℓ_n = δ_n``) it is ``‖δ_n‖ sqrt(‖o_n‖² + 1)``. For a loss that is a mean over the
    batch, ``L = 1/B Σ_n ℓ_n`` (tv.mse, tv.crossentropy), the δ of the batch is ``1/B`` of the
    per-sample one, so with ``mean_loss=True`` the result is multiplied by B: it is the
    gradient norm of ℓ_n, the loss of sample n on its own (pass False for a summed loss).
    A stack's records (E, features, B) give each member's norms, (E, B).

    >>> import numpy as np
    >>> delta, O = np.array([[0.5, 0.0], [0.0, 0.25]]), np.array([[1.0, 0.0], [0.0, 3.0]])
    >>> per_sample_grad_norms(delta, O)  # B = 2: 2 · 0.5 · √2, 2 · 0.25 · √10
    array([1.41421356, 1.58113883])
    """
    xp = namespace(delta)
    o2 = xp.sum(O * O, axis=-2) + (1 if bias else 0)  # (the features: the next to last axis)
    g = xp.sqrt(xp.sum(delta * delta, axis=-2) * o2)
    return g * delta.shape[-1] if mean_loss else g


def batch_coherence(O: Any) -> Any:
    """``mean_{i≠j} |cos(o_i, o_j)|`` over the columns (samples) of O: 1 when every sample
    points the same way (up to sign), 0 when they are orthogonal; a zero column counts as
    orthogonal to all; NaN for fewer than two samples. A stack's O (E, features, B) gives
    each member's, an array (E,).

    >>> import numpy as np
    >>> round(batch_coherence(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])), 12)  # (2/√2)/3
    0.471404520791
    """
    xp = namespace(O)
    B = O.shape[-1]
    if B < 2:
        return math.nan if O.ndim == 2 else xp.full(O.shape[0], math.nan)
    norms = xp.linalg.vector_norm(O, axis=-2, keepdims=True)
    U = O / xp.where(norms > 0, norms, 1.0)
    G = U.mT @ U
    G = xp.abs(G, out=G) if hasattr(G, "__array_ufunc__") else xp.abs(G)  # (NumPy: in place)
    c = (xp.sum(G, axis=(-2, -1)) - xp.sum(xp.linalg.diagonal(G), axis=-1)) / (B * (B - 1))
    return float(c) if O.ndim == 2 else c


def effective_rank_from_sigma(sigma: Any) -> Any:
    """``exp(−Σ_i p_i log p_i)`` with ``p_i = σ_i / Σ_j σ_j``, the exponential of the entropy
    of the normalised singular values σ (Roy & Vetterli, 2007): 1 for one nonzero σ, n for n
    equal ones; 0 when every σ is 0 (the zero matrix has rank 0). σ of E matrices (E, n)
    gives each one's, an array (E,).

    >>> import numpy as np
    >>> [round(effective_rank_from_sigma(np.array(s)), 12) for s in ([2.0, 2.0, 0.0], [0.0])]
    [2.0, 0.0]
    """
    xp = namespace(sigma)
    total = xp.sum(sigma, axis=-1, keepdims=True)
    p = sigma / xp.where(total > 0, total, 1.0)  # (all σ = 0: p = 0, the rank 0 below)
    # 0 · log 0 = 0; the inner where keeps log away from 0 (no warning, no NaN).
    rank = xp.exp(-xp.sum(xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0), axis=-1))
    rank = xp.where(total[..., 0] > 0, rank, 0.0)
    return float(rank) if sigma.ndim == 1 else rank


def effective_rank(O: Any) -> Any:
    """The effective rank of a matrix: `effective_rank_from_sigma` of its singular values,
    between 1 (rank one) and min(shape) (all σ_i equal); 0 for O = 0. E matrices (E, m, n)
    give each one's, an array (E,).

    >>> import numpy as np
    >>> [round(effective_rank(O), 12) for O in (np.diag([1.0, 1.0, 1.0, 0.0]), np.ones((3, 5)))]
    [3.0, 1.0]
    """
    return effective_rank_from_sigma(namespace(O).linalg.svdvals(O))


def decompose(model: Any, x: Any = None) -> list[dict[str, Any]]:
    """The parts of ΔA^k for every Dense layer, after `tv.update` (the layers still hold the
    forward pass and δ^k of the gradient): feeds ``x`` (default: the model's last input) a
    second time, then puts the first pass's recorded values back on the layers.

    Returns per layer k (depth order) a dict of arrays: ``dA`` (measured A_after − A_before),
    ``own`` ΔW O (+ Δb), ``inherited`` W ΔO, ``second`` ΔW ΔO, ``delta`` δ^k (or None),
    ``input`` O^{k-1}, and ``layer`` k, ``bias`` (whether the layer has one). Of a stack
    (`tv.stack`), every array has the member axis first (an input shared by the members
    too: each member's own O), and `step_summary` gives every member's figures at once."""
    dense = dense_layers(model)
    if x is None:
        x = getattr(model, "input", None)
    if x is None or any(d.input is None or d.preact is None for d in dense):
        raise ValueError(
            "decompose needs a forward pass before the update (run tv.gradient and tv.update "
            "first) and its input x (Chain, Dense and the containers keep it; otherwise pass x)"
        )
    before = [(d.input, d.preact) for d in dense]
    with preserved_forward(model), no_grad():
        model(x)
        after = [(d.input, d.preact) for d in dense]
    parts = []
    for k, (d, (O, A), (O_new, A_new)) in enumerate(
        zip(dense, before, after, strict=True), start=1
    ):
        xp = namespace(A)
        dW = d.dW if d.dW is not None else xp.zeros_like(d.weight)
        W = d.weight - dW  # the weights the first pass used
        if d.members is not None and O.ndim == 2:  # shared by the members: each one's O
            O, O_new = (xp.broadcast_to(o, (d.members, *o.shape)) for o in (O, O_new))
        dO = O_new - O
        own = dW @ O
        if d.db is not None:
            own = own + d.db[..., None]
        parts.append(
            {
                "layer": k,
                "dA": A_new - A,
                "own": own,
                "inherited": W @ dO,
                "second": dW @ dO,
                "delta": d.delta,
                "input": O,
                "bias": d.bias is not None,
            }
        )
    return parts


def _divide(num: Any, den: Any, floor: float | None = None) -> Any:
    """num / den where den > 0, else NaN (``floor``: num / max(den, floor)); of two floats
    (a run alone) or of each member's (arrays)."""
    if isinstance(den, float):
        if floor is not None:
            return num / max(den, floor)
        return num / den if den > 0 else math.nan
    xp = namespace(den)
    if floor is not None:
        return num / xp.maximum(den, floor)
    return xp.where(den > 0, num / xp.where(den > 0, den, 1.0), math.nan)


def _squared(norm: Any) -> Any:
    """‖·‖² of a run alone (a float: Python's power, a C ``pow`` call) or of each member: the
    same power of each member's float, since ``x ** 2`` of an array (x · x) can differ from
    it in the last bit."""
    if isinstance(norm, float):
        return norm**2
    return namespace(norm).asarray([v**2 for v in norm.tolist()])


def step_summary(part: dict[str, Any], *, mean_loss: bool = True) -> dict[str, Any]:
    """The per-layer figures of the module doc from one `decompose` entry; of a stack's
    entry (member axis first), each figure is an array over the members, member e's equal to
    measuring member e alone."""
    dA, own, inh, second, delta, O = (
        part[k] for k in ("dA", "own", "inherited", "second", "delta", "input")
    )
    xp, stacked = namespace(dA), dA.ndim == 3
    out = {
        "layer": part["layer"],
        "dA_norm": norm(dA, stacked),
        "own_norm": norm(own, stacked),
        "inherited_norm": norm(inh, stacked),
        "second_norm": norm(second, stacked),
        "cos_own_inherited": cos(own, inh, stacked),
        "residual": _divide(
            norm(dA - (own + inh + second), stacked), norm(dA, stacked), floor=1e-300
        ),
        "o_norm2": _squared(norm(O, stacked)) / O.shape[-1],
        "coherence": batch_coherence(O),
        "effective_rank": effective_rank(O),
    }
    out["ratio"] = _divide(out["inherited_norm"], out["own_norm"])
    if delta is None:
        nan = xp.full(dA.shape[0], math.nan) if stacked else math.nan
        keys = ("cos_total_delta", "cos_own_delta", "delta_norm2", "grad_norm_mean",
                "grad_norm_max")  # fmt: skip
        return out | dict.fromkeys(keys, nan)
    g = per_sample_grad_norms(delta, O, bias=part["bias"], mean_loss=mean_loss)
    out["cos_total_delta"] = cos(dA, -delta, stacked)
    out["cos_own_delta"] = cos(own, -delta, stacked)
    out["delta_norm2"] = _squared(norm(delta, stacked)) / delta.shape[-1]
    out["grad_norm_mean"], out["grad_norm_max"] = xp.mean(g, axis=-1), xp.max(g, axis=-1)
    if not stacked:
        out["grad_norm_mean"], out["grad_norm_max"] = (float(out["grad_norm_mean"]),
                                                       float(out["grad_norm_max"]))  # fmt: skip
    return out


def analyze_step(
    loss: Callable[..., Any], model: Any, state: Any, *args: Any, mean_loss: bool = True
) -> tuple[float, list[dict[str, Any]]]:
    """One training step with its vector analysis: the gradient of ``loss(model, *args)``,
    `tv.update`, and the same input fed again (the first of ``args``, e.g. ``x``).

    Returns the loss before the step and per Dense layer the `step_summary` figures plus, as
    host arrays, ``per_sample_grad_norms`` and the parts ``dA``, ``own``, ``inherited``,
    ``second``.

    >>> import numpy as np, tinyvec as tv
    >>> m = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
    >>> x, y = np.array([[1.0], [2.0]]), np.array([[0.5]])
    >>> state = tv.setup(tv.Descent(0.1), m)
    >>> _, (l1, l2) = analyze_step(lambda m, x, y: tv.mse(m(x), y), m, state, x, y)
    >>> round(l1["cos_own_delta"], 12), l1["inherited_norm"], l2["residual"] < 1e-12
    (1.0, 0.0, True)
    """
    if not args:
        raise ValueError("analyze_step needs the loss's arguments after the state, e.g. x, y")
    value, grads = withgradient(lambda m: loss(m, *args), model)
    update(state, model, grads)
    records = []
    for part in decompose(model, args[0]):
        rec: dict[str, Any] = step_summary(part, mean_loss=mean_loss)
        if part["delta"] is not None:
            g = per_sample_grad_norms(
                part["delta"], part["input"], bias=part["bias"], mean_loss=mean_loss
            )
            rec["per_sample_grad_norms"] = to_numpy(g)
        rec |= {k: to_numpy(part[k]) for k in ("dA", "own", "inherited", "second")}
        records.append(rec)
    return float(value), records


class VectorRecorder(Recorder):
    """A `tv.Recorder` that adds, every ``measure_every`` steps, the vector analysis of the
    step (`step_summary`, a second forward pass of the batch) to each layer's row; the base
    Recorder's own columns and snapshots stay as they are. Pass it as ``tv.train(...,
    recorder=VectorRecorder())``, then `column` / `matrix` give time series and heatmaps.

    >>> import numpy as np, tinyvec as tv
    >>> m = tv.Chain(tv.Dense(2, 4, tv.tanh, rng=0), tv.Dense(4, 1, rng=1))
    >>> x, y = np.ones((2, 8)), np.zeros((1, 8))
    >>> rec = VectorRecorder()
    >>> _ = tv.train(lambda m, x, y: tv.mse(m(x), y), m, [(x, y)], tv.setup(tv.Descent(0.1), m),
    ...              epochs=3, recorder=rec, progress=False)
    >>> rec.matrix("ratio").shape, rec.column("coherence", 1).round(12).tolist()
    ((2, 3), [1.0, 1.0, 1.0])
    """

    def __init__(self, measure_every: int = 1, *, mean_loss: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if measure_every < 1:
            raise ValueError(f"measure_every must be ≥ 1, got {measure_every}")
        self.measure_every, self.mean_loss = measure_every, mean_loss

    def _measure(
        self, model: Any, step: int, loss: Any, E: int | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rows, snapshots = super()._measure(model, step, loss, E)
        if step % self.measure_every:
            return rows, snapshots
        base = {r["layer"]: r for r in rows}
        for part in decompose(model):
            row = base.get(part["layer"])
            if row is None:
                row = {"step": step, "layer": part["layer"], "loss": loss}
                rows.append(row)
            row.update(step_summary(part, mean_loss=self.mean_loss))
        return rows, snapshots

    def matrix(self, name: str) -> np.ndarray:
        """layer × measured step array of one figure (NaN where a layer has no value)."""
        steps = sorted({r["step"] for r in self.rows if name in r})
        layers = sorted({r["layer"] for r in self.rows if name in r})
        out = np.full((len(layers), len(steps)), np.nan)
        col, row = {s: i for i, s in enumerate(steps)}, {k: i for i, k in enumerate(layers)}
        for r in self.rows:
            if name in r:
                out[row[r["layer"]], col[r["step"]]] = r[name]
        return out

    def steps(self, name: str = "dA_norm") -> np.ndarray:
        """The steps at which ``name`` was measured (the columns of `matrix`)."""
        return np.array(sorted({r["step"] for r in self.rows if name in r}))
