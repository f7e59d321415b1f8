"""gradient / withgradient / setup / update, as in Flux (`train` is in `loop`).

Gradients and optimiser state are trees that mirror the model: a layer becomes a `Tree` with
one entry per parameter and per child, a tuple of layers a tuple of trees. So
``grads.layers[0].weight`` is ∂L/∂W¹ of a Chain, and ``grads["model.layers[0].weight"]`` the
same entry by its `tv.trainables` path.

Every step is atomic: `update` first computes the whole next step (every new parameter, every
new optimiser state, what the layers record) without touching anything, checks that it is
finite, and only then writes it (`Commit`). A Ctrl-C (SIGINT) that arrives meanwhile waits for
the write to finish (`interrupts_deferred`); `train` holds it for the whole step (gradient and
update), so that it stops between two steps. So an exception or a Ctrl-C anywhere leaves the
model and the state all at step n or all at n+1. (A signal handler of your own that raises is
not deferred: only SIGINT is.) Two threads may train two models; two threads stepping the same
model is not supported.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .. import seam
from ..backend import is_array, namespace
from ..engine.ops import reduce_sum
from ..engine.tensor import Tensor, grad, setting
from ..layers.base import Tree, match, mirror, nodes, trainables
from ..layers.stack import stack_members
from .rules import Rule, member_lengths
from .subtrees import rules_by_path

__all__ = [
    "Commit",
    "Leaf",
    "NonFiniteLoss",
    "NonFiniteStep",
    "OptState",
    "StepTransform",
    "Tree",
    "check_entries",
    "descend",
    "differentiate",
    "finite",
    "gradient",
    "gradients_of",
    "graph_leaf",
    "interrupts_deferred",
    "refuse_non_finite",
    "rewritten",
    "set_all",
    "setup",
    "update",
    "withgradient",
]


# --- all or nothing -------------------------------------------------------------------------
def set_all(writes: list[tuple[Any, str, Any]]) -> None:
    """``setattr(obj, name, value)`` for every write, all or (in effect) nothing: if an interrupt
    lands between two writes, the ``finally`` finishes the rest before it propagates (each
    write can be repeated), so no one ever sees half of them."""
    done = 0
    try:
        for obj, name, value in writes:
            setattr(obj, name, value)
            done += 1
    finally:
        for obj, name, value in writes[done:]:
            setattr(obj, name, value)


# `signal`'s C core: the same calls without converting handlers to and from enums, which
# costs an exception per call for a Python handler, at every step
_signals: Any = getattr(signal, "_signal", signal)
_SIGINT = int(signal.SIGINT)


class interrupts_deferred:  # noqa: N801 - used as a function: ``with interrupts_deferred():``
    """Inside this block a Ctrl-C (SIGINT) is held back and delivered to the handler that was
    in place when the block ends. With ``second_interrupts`` a second Ctrl-C goes through at
    once (for a block running user code that might hang). Only the main thread gets signals,
    so elsewhere, and inside another such block, it does nothing."""

    __slots__ = ("current", "held", "second")

    def __init__(self, second_interrupts: bool = False) -> None:
        self.current: Any = None
        self.held: list[tuple[int, Any]] = []
        self.second = second_interrupts

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = _signals.getsignal(_SIGINT)
        if current is None or getattr(current, "holds_interrupts", False):
            return
        self.current = current
        _signals.signal(_SIGINT, self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        self.held.append((signum, frame))
        if self.second and len(self.held) == 2:
            _deliver(self.current, signum, frame)

    _hold.holds_interrupts = True  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        if self.current is None:
            return
        _signals.signal(_SIGINT, self.current)
        if len(self.held) == 1:  # (a second one was delivered already)
            _deliver(self.current, *self.held[0])


def _deliver(handler: Any, signum: int, frame: Any) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


# --- gradients ------------------------------------------------------------------------------
def withgradient(f: Callable[..., Any], *args: Any, create_graph: bool = False) -> tuple[Any, Any]:
    """``(f(args...), gradient)``: the value and the gradient of scalar ``f`` with respect to
    each argument, a model (→ Tree mirroring it) or an array (→ array). One argument gives one
    gradient, several a tuple. ``f`` must return a scalar Tensor computed from its arguments
    with tinyvec's ops (``float(...)`` or NumPy on ``.data`` would cut the graph).

    ``create_graph=True``: the value and every gradient are Tensors, graphs that can be
    differentiated again. Inside another `gradient` of the same model that is a gradient of a
    gradient: ``tv.gradient(lambda m: ⟨tv.gradient(f, m, create_graph=True), v⟩, model)`` is
    the Hessian-vector product H v (`tv.hvp`).

    >>> import numpy as np, tinyvec as tv
    >>> loss, g = tv.withgradient(lambda x: tv.ops.sum(x * x), np.array([1.0, 2.0]))
    >>> float(loss), g
    (5.0, array([2., 4.]))
    >>> f = lambda x: tv.ops.sum(x * x * x)                    # ∂f/∂x = 3x², ∂²f/∂x² = 6x
    >>> tv.gradient(lambda x: tv.ops.sum(tv.gradient(f, x, create_graph=True)), np.array([1.0, 2.0]))
    array([ 6., 12.])
    """
    # a Ctrl-C waits for the parameters to be plain arrays again (a second one goes at once)
    with interrupts_deferred(second_interrupts=True):
        return differentiate(f, args, create_graph=create_graph)


def gradient(f: Callable[..., Any], *args: Any, create_graph: bool = False) -> Any:
    """The gradient of scalar ``f`` with respect to each argument (see `withgradient`; with
    ``create_graph=True`` a tree of Tensors that can be differentiated again).

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Dense(1, 1, bias=False, init=lambda shape, rng: np.full(shape, 3.0))
    >>> grads = tv.gradient(lambda m: tv.ops.sum(m(np.ones((1, 1)))), model)
    >>> grads["model.weight"]
    array([[1.]])
    """
    return withgradient(f, *args, create_graph=create_graph)[1]


def differentiate(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    check: Callable[[Any], None] | None = None,
    create_graph: bool = False,
) -> tuple[Any, Any]:
    """`withgradient` of ``f(*args)``, calling ``check(loss)`` between the forward and the
    backward pass (`tv.train` refuses a non-finite loss there). With ``create_graph`` it runs
    on the reference road only (the fast road's nodes are differentiated once)."""
    if create_graph:
        with setting(seam.OFF, True):
            return _differentiate(f, args, check, create_graph=True)
    fast = seam.road()
    done = NotImplemented if fast is None else fast.differentiate(f, args, check)
    return _differentiate(f, args, check) if done is NotImplemented else done


def _differentiate(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    check: Callable[[Any], None] | None,
    create_graph: bool = False,
) -> tuple[Any, Any]:
    inputs, walks, params = [], [], []
    for arg in args:  # a model's parameters are differentiated, an array itself
        walked = None if is_array(arg) or type(arg) is Tensor else nodes(arg)
        inputs.append(graph_leaf(arg, create_graph) if walked is None else arg)
        walks.append(walked)
        params.append([] if walked is None else trainables(arg, walked))
    value, grads = gradients_of(
        f, inputs, [p for ps in params for p in ps], check, create_graph=create_graph
    )
    n = sum(walked is None for walked in walks)  # the arrays' gradients come first
    out: list[Any] = []
    of_arrays, each = iter(grads[:n]), iter(grads[n:])
    for walked, ps in zip(walks, params, strict=True):
        if walked is None:
            out.append(next(of_arrays))
            continue
        got: dict[tuple[int, str], Any] = {(id(layer), name): next(each) for _, layer, name in ps}
        out.append(mirror(walked, lambda layer, name: got[id(layer), name]))
    return value, out[0] if len(out) == 1 else tuple(out)


def graph_leaf(value: Any, create_graph: bool = False) -> Tensor:
    """The graph's leaf for an array or parameter ``value``. Inside an outer `gradient` the
    value is already a Tensor: with ``create_graph`` the leaf passes its cotangent on to it
    (an identity node), so the outer gradient differentiates through this one; without, it is
    a constant there (as ``torch.autograd.grad`` without ``create_graph``)."""
    if type(value) is not Tensor:
        return Tensor(value)
    if not create_graph:
        return Tensor(value.data)
    return Tensor(value.data, (value,), _pass_on, "leaf")


def _pass_on(g: Any, here: Any = None) -> tuple[Any]:
    """The vjp of an identity node: the cotangent as it is."""
    return (g,)


def gradients_of(
    f: Callable[..., Any],
    inputs: list[Any],
    params: list[tuple[str, Any, str]],
    check: Callable[[Any], None] | None = None,
    create_graph: bool = False,
) -> tuple[Any, list[Any]]:
    """``(f(*inputs), [∂L/∂x for each Tensor of inputs, then for each (path, layer, name) of
    params])``: every parameter attribute holds a `Tensor` (a leaf of the graph) while ``f``
    runs and its graph is walked back, and its plain array again afterwards, whatever
    interrupts this. With ``create_graph`` the loss and the gradients are Tensors (`grad`)."""
    swapped: list[tuple[Any, str, Any]] = []  # filled before each swap, so the finally undoes it
    try:
        tensors = [x for x in inputs if type(x) is Tensor]
        for _, layer, name in params:
            value = getattr(layer, name)
            swapped.append((layer, name, value))
            # (an array: a plain leaf; a Tensor, inside an outer gradient: see graph_leaf)
            tensors.append(
                Tensor(value) if type(value) is not Tensor else graph_leaf(value, create_graph)
            )
            setattr(layer, name, tensors[-1])
        loss = f(*inputs)
        if type(loss) is not Tensor:
            raise TypeError(
                f"the loss must be a Tensor computed from the model with tinyvec's ops, got "
                f"{type(loss).__name__}: do not call float(), .item() or NumPy on .data inside "
                "the loss (that cuts the graph, and every gradient would be None)"
            )
        members = stack_members(params)
        if members is None and loss.ndim != 0:
            raise ValueError(f"gradient needs a scalar loss, got shape {tuple(loss.shape)}")
        if members is not None and tuple(loss.shape) != (members,):
            raise ValueError(
                f"the loss of a stack of {members} models must be the {members} member losses, "
                f"shape ({members},), got shape {tuple(loss.shape)}: use tv.mse(ŷ, y, "
                "members=True) and the like (a scalar would mix the members' gradients)"
            )
        if check is not None:
            check(loss.data)
        # a stack's E member losses: the gradient of their sum, each member its own
        if create_graph:
            total = loss if members is None else reduce_sum(loss)
            return loss, grad(total, tensors, create_graph=True)
        loss.backward(None if members is None else namespace(loss.data).ones_like(loss.data))
    finally:
        set_all(swapped)  # parameters are plain arrays again, even on error
    return loss.data, [t.grad for t in tensors]


# --- optimiser state ------------------------------------------------------------------------
class Leaf:
    """A parameter's optimiser rule, and its state for a parameter of ``shape``."""

    __slots__ = ("rule", "shape", "state")

    def __init__(self, rule: Rule, state: Any, shape: tuple[int, ...] | None = None) -> None:
        self.rule, self.state, self.shape = rule, state, shape

    def __repr__(self) -> str:
        return f"Leaf({self.rule!r})"


class StepTransform:
    """Something that changes the step between the gradient and the commit, owned by the
    optimiser state: the δ-rules (`tinyvec.deltarules`) are the ones tinyvec has.

    ``setup(rule, model, delta=[t₁, t₂, …])`` calls ``t₁.bind((t₁, t₂, …), rule)`` once; the
    object it returns has ``rewrite(entries, model, commit, walked) -> (grads, writes)``:
    ``entries`` are (path, layer, name, gradient, Leaf) for every parameter, ``walked`` the
    model's `nodes`, ``grads`` the gradients the step is to take instead, in the same order,
    and ``writes`` the (object, attribute, value) to set with the step's commit. It changes
    nothing itself: the step is then the plain one, with those gradients. Where it needs a
    parameter's new value before the others (the δ-rules' sweep), it takes that parameter's
    step early with ``commit.propose(...)``."""

    def bind(self, transforms: tuple[Any, ...], rule: Rule) -> Any:  # pragma: no cover
        raise NotImplementedError


class OptState:
    """What `setup` returns: a Tree of Leafs mirroring the model (``tree``), the rule (or the
    rules by path), and the δ-rules (``delta``, a tuple, empty for plain backprop) bound into
    one ``transform``. Each Leaf holds its parameter's rule, which `tv.adjust`, `tv.freeze`
    and `tv.thaw` change."""

    def __init__(
        self,
        rule: Rule | dict[str, Rule],
        tree: Tree,
        delta: tuple[Any, ...] = (),
        transform: Any = None,
    ):
        self.rule, self.tree, self.delta, self.transform = rule, tree, delta, transform

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != seam.CACHE}  # (the fast road's)

    def __repr__(self) -> str:
        delta = f", delta={list(self.delta)!r}" if self.delta else ""
        return f"OptState({self.rule!r}{delta})"


def setup(rule: Rule | Mapping[str, Rule], model: Any, delta: Any = None) -> OptState:
    """Optimiser state for every parameter of ``model`` (Optimisers.jl's ``setup``).

    ``rule``: one rule for every parameter, or a rule per subtree, {path: rule}: each
    parameter takes the rule of the longest path that is it or holds it, ``"model"`` being
    everything (`tinyvec.optimise.subtrees.rules_by_path`). So weight decay on the last layer
    only is one state: ``{"model": Descent(0.1), "model.layers[2]":
    OptimiserChain(WeightDecay(1e-4), Descent(0.1))}``. `tv.adjust`, `tv.freeze` and
    `tv.thaw` change the state's rules later.

    ``delta``: a δ-rule or a list of them (`tinyvec.deltarules`), which `update` lets rewrite
    each Dense layer's δ^k before that layer is updated.

    >>> import tinyvec as tv
    >>> tv.setup(tv.Momentum(0.1), tv.Dense(2, 1)).tree["model.weight"]
    Leaf(Momentum(0.1, 0.9))
    >>> model = tv.Chain(tv.Dense(2, 3), tv.Dense(3, 1))
    >>> decayed = tv.OptimiserChain(tv.WeightDecay(1e-4), tv.Descent(0.1))
    >>> state = tv.setup({"model": tv.Descent(0.1), "model.layers[1]": decayed}, model)
    >>> state.tree["model.layers[0].weight"], state.tree["model.layers[1].bias"]
    (Leaf(Descent(0.1)), Leaf(OptimiserChain(WeightDecay(0.0001), Descent(0.1))))
    """
    walked = nodes(model)
    if isinstance(rule, Mapping):
        rule = dict(rule)
        chosen = rules_by_path(rule, walked)
        distinct = list({id(r): r for r in chosen.values()}.values())
        rule_of: Callable[[Any, str], Rule] = lambda layer, name: chosen[id(layer), name]  # noqa: E731
    elif isinstance(rule, Rule):
        distinct = [rule]
        rule_of = lambda layer, name: rule  # noqa: E731
    else:
        raise TypeError(
            f"setup takes an optimisation rule such as tv.Descent(0.1), or a dict of them by "
            f"path such as {{'model': tv.Descent(0.1)}}, got {rule!r}"
        )
    # a stack of models (tv.stack): each rule for its members (per-member hyperparameters of
    # length E, ClipNorm per member), or refused; an ordinary model: no per-member values
    members = stack_members(trainables(model, walked))
    for_members = {id(r): r.for_members(members) for r in distinct}
    distinct = list(for_members.values())
    rules: tuple[Any, ...] = ()
    transform = None
    if delta is not None:
        rules = tuple(delta) if isinstance(delta, list | tuple) else (delta,)
        for r in rules:
            if not isinstance(r, StepTransform):
                raise TypeError(
                    f"delta= takes δ-rules such as tv.Compensation(0.2) or "
                    f"tv.Orthogonalization(), or a list of them; got {r!r}"
                )
            lengths = member_lengths(r)
            if lengths and lengths != {members}:
                raise ValueError(
                    f"{r!r} has per-member hyperparameters of length {sorted(lengths)}, for "
                    + ("a model that is not a stack" if members is None else f"{members} members")
                )
        if rules:
            for each in distinct[1:]:  # every rule of the state must suit the δ-rules
                rules[0].bind(rules, each)
            transform = rules[0].bind(rules, distinct[0])
            rules = transform.rules

    def leaf(layer: Any, name: str) -> Leaf:
        r, x = for_members[id(rule_of(layer, name))], getattr(layer, name)
        return Leaf(r, r.init(x), tuple(x.shape))

    tree = mirror(walked, leaf)
    return OptState(
        for_members[id(rule)] if isinstance(rule, Rule) else rule, tree, rules, transform
    )


# --- the step -------------------------------------------------------------------------------
class NonFiniteLoss(FloatingPointError):
    """The loss was NaN or ±inf; training stopped before updating anything."""


class NonFiniteStep(NonFiniteLoss):
    """The step would make a parameter NaN or ±inf (a non-finite gradient: ±inf input, a sqrt
    at 0, an overflow); `update` refused it before changing anything."""


def descend(x: Any, step: Any, out: Any = None) -> tuple[Any, Any]:
    """x_new = x − step, in x's dtype (a rule may return a step of a wider dtype, say from a
    float64 hyperparameter array), written into ``out`` if given: returns (x_new, the step)."""
    if out is not None and step.dtype == x.dtype:  # (NumPy memory the fast road reuses)
        return namespace(x).subtract(x, step, out=out), step  # x − step, written into out
    new = x - step
    if new.dtype != x.dtype:
        step = namespace(step).astype(step, x.dtype)
        new = x - step
    return new, step


def finite(a: Any) -> bool:
    """Whether every entry of ``a`` is finite. One reduction first: NaN and ±inf propagate
    into Σ a² (one dot product), so only a sum that is not finite (or that overflowed) needs
    the elementwise look."""
    xp = namespace(a)
    flat = xp.reshape(a, (-1,))
    if math.isfinite(float(xp.vecdot(flat, flat))):
        return True
    return bool(xp.all(xp.isfinite(a)))


def refuse_non_finite(new: list[tuple[str, Any]]) -> None:
    """Raise `NonFiniteStep` naming the first parameter whose new value has a NaN or ±inf."""
    for path, a in new:
        if not finite(a):
            raise NonFiniteStep(
                f"the update would make {path} NaN or ±inf (a non-finite gradient or step): "
                "refused; the model and the optimiser state are unchanged"
            )


class Commit:
    """The next step of every parameter, computed but not yet written: `propose` computes one
    parameter's new value and state; `write` checks that every new value is finite and writes
    them all (with each layer's ``step`` record and what a transform recorded, such as Dense's
    ``delta_used``)."""

    def __init__(self) -> None:
        self.taken: set[tuple[int, str]] = set()  # (id(layer), name) of the steps proposed
        self.new: list[tuple[str, Any]] = []  # (path, new value): what `write` checks
        self.writes: list[tuple[Any, str, Any]] = []  # (object, attribute, value)
        self.steps: dict[int, dict[str, Any]] = {}  # id(layer) → its new ``step`` record

    def propose(self, path: str, layer: Any, name: str, leaf: Leaf, g: Any) -> Any:
        """(state, step) = rule.apply(state, x, g), x_new = x − step, in x's dtype. Returns
        x_new; nothing is written yet."""
        x = getattr(layer, name)
        if g.dtype != x.dtype:  # parameters keep their dtype (f64 targets, an f32 model)
            g = namespace(g).astype(g, x.dtype)
        state, step = leaf.rule.apply(leaf.state, x, g)
        new, step = descend(x, step)
        self.new.append((path, new))
        self.taken.add((id(layer), name))
        steps = self.steps.get(id(layer))
        if steps is None:  # the layer's record of the steps it took: the others' are kept
            steps = self.steps[id(layer)] = dict(getattr(layer, "step", None) or {})
            self.writes.append((layer, "step", steps))
        steps[name] = step
        self.writes += ((layer, name, new), (leaf, "state", state))
        return new

    def finish(self, entries: list[tuple[Any, ...]], grads: list[Any], writes: list[tuple]) -> None:
        """Propose the step of every entry (path, layer, name, _, Leaf) with its gradient in
        ``grads`` (None: no step) not proposed yet, then write all of them with ``writes``."""
        for (path, layer, name, _, leaf), g in zip(entries, grads, strict=True):
            if g is not None and (id(layer), name) not in self.taken:
                self.propose(path, layer, name, leaf, g)
        refuse_non_finite(self.new)
        set_all(self.writes + list(writes))


def rewritten(
    state: OptState, entries: list[tuple[Any, ...]], model: Any, commit: Commit, walked: Any
) -> tuple[list[Any], list[tuple[Any, str, Any]]]:
    """The gradients the step takes, in the order of ``entries``, and what to record with its
    commit: as given, or as the state's δ-rules rewrote them (`StepTransform`)."""
    if state.transform is None:
        return [entry[3] for entry in entries], []
    return state.transform.rewrite(entries, model, commit, walked)


def check_entries(entries: list[tuple[Any, ...]]) -> None:
    """Refuse, before anything is computed, a gradient that is not an array of its parameter's
    shape, or an optimiser state entry that is not a Leaf (entries: path, layer, name, g, Leaf)."""
    for path, layer, name, g, leaf in entries:
        x = getattr(layer, name)
        if g is not None and (not is_array(g) or g.shape != x.shape):
            shape = tuple(g.shape) if is_array(g) else type(g).__name__
            raise ValueError(
                f"gradients do not match the model: {path} has shape {tuple(x.shape)}, "
                f"gradient {shape}"
            )
        if not isinstance(leaf, Leaf):
            raise ValueError(f"optimiser state does not match the model at {path}")
        if getattr(leaf, "shape", None) not in (None, x.shape) and leaf.state is not None:
            raise ValueError(
                f"optimiser state does not match the model at {path}: set up for shape "
                f"{leaf.shape}, it is now {tuple(x.shape)} (the old state would be broadcast "
                "onto it): call tv.setup(rule, model) again after editing the model"
            )


def update(state: OptState, model: Any, grads: Tree) -> None:
    """Apply one step of the optimiser to ``model`` in place: x ← x − step for every
    parameter with a gradient. Each layer keeps what it subtracted in ``layer.step[name]``
    (Dense shows it as ``dW = -step``, ``db``). Atomic: the whole step is computed and checked
    (`NonFiniteStep`) before anything is written."""
    if not isinstance(state, OptState):
        raise TypeError(
            f"update takes the optimiser state, got {type(state).__name__}: call "
            "tv.setup(rule, model) first and pass what it returns: "
            "state = tv.setup(tv.Descent(0.01), model); tv.update(state, model, grads)"
        )
    fast = seam.road()
    if fast is not None and fast.update(state, model, grads):
        return
    walked = nodes(model)
    entries = match(walked, (grads, state.tree), ("gradients", "optimiser state"))
    check_entries(entries)
    with interrupts_deferred():
        commit = Commit()
        new_grads, writes = rewritten(state, entries, model, commit, walked)
        commit.finish(entries, new_grads, writes)
