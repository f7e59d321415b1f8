"""The update with δ-rules: the step transform `tv.setup(..., delta=...)` installs. It rewrites
the gradients of the Dense layers; the step is then the plain one, with those gradients
(`tv.update`'s, written out or general), committed with each layer's δ̃^k in one go.

1. Without a Compensation (or with κ = 0) every Dense layer k's gradient is rewritten with
   its δ̃^k; nothing else is needed.
2. With a Compensation, one extra forward sweep ``model(model.input)`` runs with Dense's
   forward overridden (`tinyvec.layers.dense.forward_override`, in this thread only): at Dense
   layer k the override receives Õ^{k-1}, computed by the already updated layers before it,
   forms ``ΔO^{k-1} = Õ^{k-1} − O^{k-1}`` (O^{k-1} = the input recorded by the gradient's
   forward pass), lets the δ-rules rewrite δ^k, computes the new weights the step will give
   layer k, and passes on the output of the *updated* layer on Õ^{k-1} (exactly, or to first
   order in the activation: see `tinyvec.deltarules.compensation`). Parameters outside Dense
   layers hold the values their plain step will give them (so the change they cause in later
   inputs is part of ΔO). The sweep stops after the last Dense layer.

Nothing is written during all this (a δ-rule that raises changes nothing): the steps the sweep
takes go into the step's `Commit`, which `update` completes with the others and commits in one
go, and only for the length of the sweep do parameters outside Dense layers hold their new
values, so that the forward pass sees them; they are put back whatever happens.

Layer k's gradient becomes ``g + (δ̃^k − δ^k) O^{k-1}ᵀ`` (bias: ``+ Σ_batch (δ̃^k − δ^k)``),
which is ``δ̃^k O^{k-1}ᵀ`` for a loss of the network output alone and keeps any other term of
the gradient (a weight penalty in the loss) as it was; a rule that returns δ^k itself leaves
``g`` untouched, bit for bit. A `MemoryRule` (the last of the list) also rewrites the inputs
Ō = [O^{k-1}; 1] into Ō' = [O'; o'_b]: the gradient becomes ``g + δ̃^k O'ᵀ − δ^k O^{k-1}ᵀ``
(bias: ``+ δ̃^k o'_bᵀ − Σ_batch δ^k``), and its memory of the layer, kept in
``DeltaStep.memory`` under (rule index, layer path), is replaced with the commit.

Each Dense layer keeps δ^k in ``delta``, O^{k-1}, A^k, O^k of the gradient's forward pass in
``input``, ``preact``, ``output`` (the sweep does not overwrite them), and δ̃^k in
``delta_used``. A Dense layer the sweep does not reach is updated without ΔO.

Cost: the array work per layer is the rules' own (see each rule's module) plus the correction of the gradient
above: one product (δ̃ − δ) Oᵀ and a sum over the batch. That correction could be avoided
only by not forming δOᵀ in the backward pass when a δ-rule will rewrite δ (the gradient would
then be δ̃Oᵀ plus the loss's other terms), a change to Dense's backward pass, not made here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace
from ..engine.tensor import data
from ..layers.base import Node
from ..layers.dense import Dense, affine, backprop_delta, batch_sum, forward_override
from ..optimise.adjust import Frozen
from ..optimise.rules import Rule
from ..optimise.training import Commit, StepTransform, set_all
from .base import LayerContext, step_size


def check_rules(delta: Any, rule: Rule) -> tuple[Any, ...]:
    """The δ-rules given to `tv.setup` as a tuple, after checking them and the optimiser.

    ``delta`` is one δ-rule or a list of them, applied in the order given (Compensation then
    Orthogonalization: aim each sample's move first, then solve for it). At most one rule that
    needs a sweep (``rule.sweep``: a Compensation), whose variant decides what ΔO^{k-1} is; a
    rule that remembers (``rule.remembers``: a `MemoryRule`) comes last. The optimiser must
    have a step size α (see `tinyvec.deltarules.base.step_size`): Adam and other adaptive
    rules are refused.

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
    for r in rules:  # (the protocol of `tinyvec.deltarules.rule.DeltaRule`)
        if not (isinstance(r, StepTransform) and hasattr(r, "rewrite")):
            raise TypeError(
                f"delta= takes δ-rules such as tv.Compensation(0.2) or tv.Orthogonalization(), "
                f"or a list of them; got {r!r}"
            )
    if sum(r.sweep is not None for r in rules) > 1:
        raise ValueError(f"at most one Compensation per update, got {list(rules)}")
    if any(r.remembers for r in rules[:-1]):
        raise ValueError(
            f"{next(r for r in rules if r.remembers)!r} changes the inputs the "
            f"step is taken on, so it must be the last δ-rule of the list, got {list(rules)}"
        )
    if rules:
        step_size(rule)
    return rules


class _SweepDone(Exception):
    """Raised by the override after the last Dense layer is updated: the rest of the forward
    pass is not needed."""


Entry = tuple[int, str, str, Any, Any]  # (index, path, name, Leaf, gradient) of a Dense parameter


class DeltaStep:
    """A tuple of δ-rules, as one step transform of an optimiser state.

    The step size α of a Dense layer is read from its parameters' rules at every step
    (`tinyvec.deltarules.base.step_size`), so `tv.adjust` and a learning-rate schedule
    change it with the step itself, and a rule per subtree gives each layer its own α.

    ``memory``: what the `MemoryRule` s remember, {(index of the rule, path of the Dense
    layer): memory}; part of the optimiser state, replaced (never changed in place) with the
    commit of a step."""

    def __init__(self, rules: Any, rule: Rule) -> None:
        self.rules = check_rules(rules, rule)
        self.memory: dict[tuple[int, str], Any] = {}
        self.remembers = any(r.remembers for r in self.rules)
        # the sweep's variant, or None: no sweep (no Compensation, or κ = 0)
        self.sweep = next((r.sweep for r in self.rules if r.sweep is not None), None)

    def __repr__(self) -> str:
        return f"DeltaStep({list(self.rules)!r})"

    def rewrite(
        self, entries: list[tuple[Any, ...]], model: Any, commit: Commit, walked: list[Node]
    ) -> tuple[list[Any], list[tuple[Any, str, Any]]]:
        """The gradients of the step, in the order of ``entries`` (path, layer, name,
        gradient, Leaf), every Dense layer's rewritten with its δ̃^k; and what to record with
        the step's commit: each Dense layer's δ̃^k (``delta_used``) and the memories. Nothing
        is written (the sweep's temporary values are put back); the sweep takes the steps
        whose new values it runs the model with in ``commit``. ``walked``: the model's `nodes`."""
        containers = _containers(walked)
        grads = [entry[3] for entry in entries]
        writes: list[tuple[Any, str, Any]] = []
        targets: dict[int, _Target] = {}
        plain = []
        for i, (path, layer, name, g, leaf) in enumerate(entries):
            if g is None:
                continue
            if isinstance(layer, Dense) and not isinstance(leaf.rule, Frozen):
                target = targets.get(id(layer))
                if target is None:
                    target = targets[id(layer)] = _Target(layer)
                target.entries.append((i, path, name, leaf, g))
                if name == "bias":
                    target.bias = True
            else:
                plain.append((path, layer, name, leaf, g))
        for target in targets.values():
            _check_recorded(target.layer)
        variant = self.sweep
        if variant is not None and not hasattr(model, "input"):
            raise ValueError(
                f"Compensation reruns the forward pass from model.input, and "
                f"{type(model).__name__} does not keep its input: put the model in a tv.Chain"
            )
        # the memories after this step: a new dict, committed with the step
        memory = dict(self.memory) if self.remembers else None
        rewriting = _Rewriting(self, commit, grads, writes, memory)
        if variant is not None:
            moved = [
                (layer, name, commit.propose(path, layer, name, leaf, g))
                for path, layer, name, leaf, g in plain
            ]
            self._sweep(rewriting, model, containers, moved, targets, variant)
        for target in targets.values():  # all, or those the sweep did not reach
            if not target.done:
                rewriting.dense(target, None, False)
        if memory is not None:
            writes.append((self, "memory", memory))
        return grads, writes

    def _sweep(
        self,
        rewriting: _Rewriting,
        model: Any,
        containers: list[Any],
        moved: list[tuple[Any, str, Any]],
        targets: dict[int, _Target],
        variant: str,
    ) -> None:
        """The extra forward pass that rewrites Dense layers in depth order, each with its
        ΔO^{k-1}, through the layers before it with their new values."""
        override = _Override(rewriting, targets, variant)
        # containers keep a reference to their last input (give them back the gradient's), and
        # parameters outside Dense layers hold their new values only during the sweep
        restore = [(c, "input", c.input) for c in containers if hasattr(c, "input")]
        restore += [(layer, name, getattr(layer, name)) for layer, name, _ in moved]
        try:
            for layer, name, new in moved:
                setattr(layer, name, new)
            with forward_override(override):
                model(model.input)
        except _SweepDone:
            pass
        finally:
            set_all(restore)


class _Rewriting:
    """One step's rewriting in progress: its `Commit`, the gradients (rewritten in place,
    by index), the writes and the pending memories (None without a `MemoryRule`)."""

    __slots__ = ("commit", "grads", "memory", "transform", "writes")

    def __init__(
        self, transform: DeltaStep, commit: Commit, grads: list, writes: list, memory: Any
    ) -> None:
        self.transform, self.commit, self.grads = transform, commit, grads
        self.writes, self.memory = writes, memory

    def dense(self, target: _Target, dO: Any, sweep: bool) -> None:
        """Rewrite δ^k through the δ-rules, and layer k's gradients with δ̃^k; with ``sweep``,
        also layer k's new W and b (``target.weight``, ``target.bias_value``), which the sweep
        runs the updated layer with."""
        transform, layer, entries = self.transform, target.layer, target.entries
        delta, O = layer.delta, layer.input
        ctx = LayerContext(layer.weight, _members_of(O, delta), dO, _alpha(entries), target.bias)
        used, inputs = delta, None  # inputs: Ō = [O; 1] as rewritten by a MemoryRule
        for i, rule in enumerate(transform.rules):
            if rule.remembers:
                key = (i, entries[0][1].rsplit(".", 1)[0])  # the layer's path
                memory = self.memory
                used, inputs, memory[key] = rule.rewrite_remembering(used, ctx, memory.get(key))
            else:
                used = rule.rewrite(used, ctx)
        self.writes.append((layer, "delta_used", used))
        target.done = True
        target.weight, target.bias_value = layer.weight, layer.bias  # those without a gradient
        unchanged = inputs is None and used is delta  # then the plain step, bit for bit
        if inputs is None and not unchanged:
            change = used - delta
        for i, path, name, leaf, g in entries:
            if unchanged:
                pass
            elif inputs is None:  # g + (δ̃ − δ) Oᵀ; the bias: + Σ_batch (δ̃ − δ)
                g = g + (change @ O.mT if name == "weight" else batch_sum(change))
            elif name == "weight":  # g + δ̃ Õᵀ − δ Oᵀ, Õ the inputs as the MemoryRule rewrote them
                g = g + (used @ inputs[..., : O.shape[-2], :].mT - delta @ O.mT)
            else:  # the bias: the row of ones of Ō, rewritten
                g = g + ((used @ inputs[..., O.shape[-2], :, None])[..., 0] - batch_sum(delta))
            self.grads[i] = g
            if sweep:  # the sweep runs the updated layer: its step is taken now
                new = self.commit.propose(path, layer, name, leaf, g)
                if name == "weight":
                    target.weight = new
                else:
                    target.bias_value = new


def _alpha(entries: list[Entry]) -> float:
    """α of a Dense layer's step, from the rules of its parameters as they are now (after any
    `tv.adjust`); its weight and bias must share it, since ΔW = -α δ̃ Oᵀ and Δb = -α Σ δ̃."""
    rule = entries[0][3].rule
    alpha = step_size(rule)  # (E of them in a stack)
    for _, path, _, leaf, _ in entries[1:]:  # (the weight and bias share one rule unless given two)
        if leaf.rule is not rule:
            each = (alpha, step_size(leaf.rule))
            alphas = {tuple(a.tolist()) if isinstance(a, np.ndarray) else a for a in each}
            if len(alphas) > 1:
                raise ValueError(
                    f"δ-rules need one step size α per Dense layer, but the parameters of "
                    f"{path.rsplit('.', 1)[0]} have rules with α = {sorted(alphas)}: give the "
                    "layer one rule"
                )
    return alpha


def _containers(walked: list[Node]) -> list[Any]:
    """The layers other than Dense (whose recorded inputs the sweep puts back), after checking
    that no Dense layer is shared."""
    dense = [node.layer for node in walked if isinstance(node.layer, Dense)]
    if len({id(d) for d in dense}) != len(dense):
        raise ValueError(
            "δ-rules need every Dense layer once in the model: a shared Dense layer has one "
            "recorded δ^k and O^{k-1} for several uses"
        )
    return [node.layer for node in walked if not isinstance(node.layer, Dense)]


def _members_of(O: Any, delta: Any) -> Any:
    """O^{k-1} as the δ-rules read it: in a stack (`tv.stack`), an input (in, B) shared by the
    members stacked to (E, in, B), each member's own copy laid out as an input given per
    member, so that every rule sees each member's own and its products are the BLAS calls of
    the run alone. (A broadcast view, whose member axis has stride 0, led NumPy's concat to
    another layout, and the matmuls on it to another order of summation: a member's step
    then differed from its run alone in the last bit.)"""
    if O.ndim < delta.ndim:
        return namespace(O).stack([O] * delta.shape[0])
    return O


class _Target:
    """A Dense layer to step: its entries (index, path, name, Leaf, gradient), whether it trains a
    bias, and, once `_Rewriting.dense` has run (``done``), its new W and b."""

    __slots__ = ("bias", "bias_value", "done", "entries", "layer", "weight")

    def __init__(self, layer: Dense) -> None:
        self.layer = layer
        self.entries: list[Entry] = []
        self.bias = self.done = False
        self.weight: Any = None
        self.bias_value: Any = None


class _Override:
    """Dense's forward during the sweep: at layer k, ΔO^{k-1} = Õ^{k-1} − O^{k-1}, layer k's
    gradients rewritten with δ̃^k, and the updated layer's output on Õ^{k-1}. (An object, not
    a closure that calls itself: that would be a reference cycle per step.)"""

    __slots__ = ("exact", "remaining", "rewriting", "targets")

    def __init__(self, rewriting: _Rewriting, targets: dict[int, _Target], variant: str) -> None:
        self.rewriting, self.targets = rewriting, targets
        self.exact = variant == "exact"
        self.remaining = len(targets)

    def __call__(self, layer: Dense, x: Any) -> Any:
        x = data(x)
        if x.ndim == 1:  # one sample as a vector, as in `Dense._call_reshaped`
            xp = namespace(x)
            return xp.reshape(self(layer, xp.reshape(x, (x.shape[0], 1))), (-1,))
        W, b = layer.weight, layer.bias
        if x.dtype is not W.dtype and x.dtype != W.dtype:
            x = namespace(x).astype(x, W.dtype)
        target = self.targets.get(id(layer))
        if target is None or target.done:  # not trained (or no gradient): the plain forward
            return layer.sigma.f(affine(W, b, x))
        O = layer.input
        self.rewriting.dense(target, None if x is O else x - O, True)
        self.remaining -= 1
        if not self.remaining:
            raise _SweepDone
        A_new = affine(target.weight, target.bias_value, x)  # Ã^k = W̃^k Õ^{k-1} + b̃^k
        if self.exact:
            return layer.sigma.f(A_new)
        A, out = layer.preact, layer.output  # Õ^k ≈ O^k + σ′(A^k) ⊙ (Ã^k − A^k)
        return out + backprop_delta(layer.sigma, A_new - A, A, out)


def _check_recorded(layer: Dense) -> None:
    """Refuse, before anything changes, a layer whose records do not belong to one gradient."""
    O, delta = layer.input, layer.delta
    if O is None or delta is None or O.ndim not in (2, 3) or delta.shape[-1] != O.shape[-1]:
        raise ValueError(
            f"δ-rules need the δ^k and O^{{k-1}} of the gradient's forward pass, but "
            f"{layer!r} holds input {None if O is None else tuple(O.shape)} and delta "
            f"{None if delta is None else tuple(delta.shape)}: compute the gradient "
            "right before `update`, without calling the model in between"
        )
