"""The update with δ-rules: what `tv.update` runs when `tv.setup(..., delta=...)` was given.

1. Parameters outside Dense layers take their plain step first (so the change they cause in
   later inputs is part of ΔO).
2. Without a Compensation (or with κ = 0) every Dense layer k is updated with the rewritten
   δ̃^k; nothing else is needed.
3. With a Compensation, one extra forward sweep ``model(model.input)`` runs with
   `tinyvec.layers.dense.forward_hook` set: at Dense layer k the hook receives Õ^{k-1},
   computed by the already updated layers before it, forms ``ΔO^{k-1} = Õ^{k-1} − O^{k-1}``
   (O^{k-1} = the input recorded by the gradient's forward pass), lets the δ-rules rewrite δ^k,
   updates layer k, and passes on the output of the *updated* layer on Õ^{k-1} (exactly, or to
   first order in the activation: see `tinyvec.deltarules.compensation`). The sweep stops
   after the last Dense layer is updated.

Layer k's gradient becomes ``g + (δ̃^k − δ^k) O^{k-1}ᵀ`` (bias: ``+ Σ_batch (δ̃^k − δ^k)``),
which is ``δ̃^k O^{k-1}ᵀ`` for a loss of the network output alone and keeps any other term of
the gradient (a weight penalty in the loss) as it was; a rule that returns δ^k itself leaves
``g`` untouched, bit for bit. Each Dense layer keeps δ^k in ``delta``, O^{k-1}, A^k, O^k of
the gradient's forward pass in ``input``, ``preact``, ``output`` (the sweep does not overwrite
them), and δ̃^k in ``delta_used``. A Dense layer the sweep does not reach is updated without ΔO.
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace
from ..engine.tensor import data
from ..layers import dense as dense_module
from ..layers import dense_layers, walk
from ..layers.dense import Dense
from ..optimise.rules import Rule
from ..optimise.training import apply_step
from .base import DeltaRule, LayerContext, step_size
from .compensation import Compensation


def check_rules(delta: Any, rule: Rule) -> tuple[DeltaRule, ...]:
    """The δ-rules given to `tv.setup` as a tuple, after checking them and the optimiser.

    ``delta`` is one δ-rule or a list of them, applied in the order given (Compensation then
    Orthogonalization: aim each sample's move first, then solve for it). At most one
    Compensation, whose variant decides what ΔO^{k-1} is. The optimiser must have a step size α
    (see `tinyvec.deltarules.base.step_size`): Adam and other adaptive rules are refused.

    >>> import tinyvec as tv
    >>> from tinyvec.deltarules import Compensation, Orthogonalization
    >>> check_rules([Compensation(0.2), Orthogonalization()], tv.Descent(0.1))
    (Compensation(kappa=0.2, variant='exact'), Orthogonalization(eps=0.001))
    >>> check_rules(Compensation(0.2), tv.Adam())
    Traceback (most recent call last):
    ...
    ValueError: δ-rules need an optimiser whose step is α·gradient ...
    """
    rules = tuple(delta) if isinstance(delta, list | tuple) else (delta,)
    for r in rules:
        if not isinstance(r, DeltaRule):
            raise TypeError(
                f"delta= takes δ-rules such as tv.Compensation(0.2) or tv.Orthogonalization(), "
                f"or a list of them; got {r!r}"
            )
    if sum(isinstance(r, Compensation) for r in rules) > 1:
        raise ValueError(f"at most one Compensation per update, got {list(rules)}")
    if rules:
        step_size(rule)
    return rules


class _SweepDone(Exception):
    """Raised by the hook after the last Dense layer is updated: the rest of the forward pass
    is not needed."""


def update_with_delta_rules(state: Any, model: Any, pairs: list[tuple[Any, ...]]) -> None:
    """`tv.update` with the δ-rules of ``state.delta`` (see the module text). ``pairs`` holds
    (path, layer, name, gradient, optimiser leaf) for every parameter, as `update` checked it."""
    rules, alpha = state.delta, step_size(state.rule)
    ids = [id(d) for d in dense_layers(model)]
    if len(ids) != len(set(ids)):
        raise ValueError(
            "δ-rules need every Dense layer once in the model: a shared Dense layer has one "
            "recorded δ^k and O^{k-1} for several uses"
        )
    targets: dict[int, tuple[Dense, list[tuple[str, Any, Any]]]] = {}
    plain = []
    for _, layer, name, g, leaf in pairs:
        if g is None:
            continue
        if isinstance(layer, Dense):
            targets.setdefault(id(layer), (layer, []))[1].append((name, leaf, g))
        else:
            plain.append((leaf, layer, name, g))
    for layer, _ in targets.values():
        _check_recorded(layer)
    compensation = next((r for r in rules if isinstance(r, Compensation)), None)
    sweep = compensation is not None and compensation.kappa != 0
    if sweep and not hasattr(model, "input"):
        raise ValueError(
            f"Compensation reruns the forward pass from model.input, and {type(model).__name__} "
            "does not keep its input: put the model in a tv.Chain"
        )

    for leaf, layer, name, g in plain:
        apply_step(leaf, layer, name, g)
    if sweep:
        containers = [c for _, c in walk(model) if not isinstance(c, Dense)]
        _sweep(model, containers, targets, rules, alpha, compensation.variant)
    for layer, entries in targets.values():  # all of them, or those the sweep did not reach
        if entries:
            _update_dense(layer, entries, rules, alpha, dO=None)


def _check_recorded(layer: Dense) -> None:
    """Refuse, before anything changes, a layer whose records do not belong to one gradient."""
    O, delta = layer.input, layer.delta
    if O is None or delta is None or O.ndim != 2 or delta.shape[1] != O.shape[1]:
        raise ValueError(
            f"δ-rules need the δ^k and O^{{k-1}} of the gradient's forward pass, but "
            f"{layer!r} holds input {None if O is None else tuple(O.shape)} and delta "
            f"{None if delta is None else tuple(delta.shape)}: compute the gradient "
            "right before `update`, without calling the model in between"
        )


def _update_dense(layer: Dense, entries: list[Any], rules: Any, alpha: float, dO: Any) -> None:
    """Rewrite δ^k through the δ-rules and take layer k's step with it."""
    delta, O = layer.delta, layer.input
    bias = any(name == "bias" for name, _, _ in entries)
    ctx = LayerContext(W=layer.weight, O=O, dO=dO, alpha=alpha, bias=bias)
    used = delta
    for rule in rules:
        used = rule.rewrite(used, ctx)
    layer.delta_used = used
    change = None if used is delta else used - delta
    for name, leaf, g in entries:
        if change is not None:
            g = g + (change @ O.mT if name == "weight" else namespace(change).sum(change, axis=1))
        apply_step(leaf, layer, name, g)
    entries.clear()


def _sweep(
    model: Any,
    containers: list[Any],
    targets: dict[int, Any],
    rules: Any,
    alpha: float,
    variant: str,
) -> None:
    """The extra forward pass that updates Dense layers in depth order, each with its ΔO^{k-1}."""
    remaining = {i for i, (_, entries) in targets.items() if entries}

    def hook(layer: Dense, x: Any) -> Any:
        x = data(x)
        xp = namespace(x)
        if x.ndim == 1:  # one sample as a vector, as in `Dense._call_reshaped`
            return xp.reshape(hook(layer, xp.reshape(x, (x.shape[0], 1))), (-1,))
        W = layer.weight
        if x.dtype != W.dtype:
            x = xp.astype(x, W.dtype)
        if id(layer) not in remaining:  # not trained (or no gradient): the ordinary forward
            return layer.sigma.f(_affine(layer, x))
        O, A, out = layer.input, layer.preact, layer.output
        _update_dense(layer, targets[id(layer)][1], rules, alpha, dO=None if x is O else x - O)
        remaining.discard(id(layer))
        if not remaining:
            raise _SweepDone
        A_new = _affine(layer, x)  # Ã^k = W̃^k Õ^{k-1} + b̃^k, with the updated weights
        if variant == "exact" or layer.sigma.derivative is None:  # identity: both agree
            return layer.sigma.f(A_new)
        return out + layer.sigma.derivative(A, out) * (A_new - A)

    # containers keep a reference to their last input; give them back the gradient's
    kept = [(c, c.input) for c in containers if hasattr(c, "input")]
    dense_module.forward_hook = hook
    try:
        model(model.input)
    except _SweepDone:
        pass
    finally:
        dense_module.forward_hook = None
        for c, x in kept:
            c.input = x


def _affine(layer: Dense, O: Any) -> Any:
    """W O + b on plain arrays, recording nothing on the layer."""
    A = layer.weight @ O
    return A if layer.bias is None else A + layer.bias[:, None]
