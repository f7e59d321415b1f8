"""gradient / withgradient / setup / update, as in Flux (`train` is in `loop`).

Gradients and optimiser state are trees that mirror the model: a layer becomes a `Tree` with
one entry per parameter and per child, a tuple of layers a tuple of trees. So
``grads.layers[0].weight`` is ∂L/∂W¹ of a Chain, and ``grads["model.layers[0].weight"]`` the
same entry by its `tv.trainables` path.

Every step is atomic: `update` first computes the whole next step (every new parameter, every
new optimiser state, what the layers record) without touching anything, checks that it is
finite, and only then writes it. A Ctrl-C (SIGINT) that arrives meanwhile waits for the write
to finish (`interrupts_deferred`): a δ-rule's sweep briefly holds new values in the model, and
an interrupt landing there, or between two writes, would tear it; `train` holds it for the
whole step (gradient and update), so that it stops between two steps. So an exception or a Ctrl-C
anywhere leaves the model and the state all at step n or all at n+1. (A signal handler of your
own that raises is not deferred: only SIGINT is.)
Two threads may train two models (or one may run a model while another trains a different
one); two threads stepping the same model is not supported.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import is_array, namespace
from ..engine.plan import Plan, Tree, plan_of
from ..engine.tensor import Tensor
from .rules import Rule
from .update_program import UpdateProgram

__all__ = [
    "Leaf",
    "NonFiniteLoss",
    "NonFiniteStep",
    "OptState",
    "PendingStep",
    "StepTransform",
    "Tree",
    "gradient",
    "interrupts_deferred",
    "model_gradient",
    "refuse_non_finite",
    "set_all",
    "setup",
    "take_step",
    "track",
    "update",
    "withgradient",
]


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
# costs microseconds (an exception per call for a Python handler) at every step
_signals: Any = getattr(signal, "_signal", signal)
_SIGINT = int(signal.SIGINT)


class interrupts_deferred:  # noqa: N801 - used as a function: ``with interrupts_deferred():``
    """Inside this block a Ctrl-C (SIGINT) is held back and delivered to the handler that was
    in place when the block ends. With ``second_interrupts`` a second Ctrl-C goes through at
    once (for a block running user code that might hang). Only the main thread gets signals,
    so elsewhere, and inside another such block, it does nothing. (A class rather than a
    generator: it runs at every step, and this form costs half as much.)"""

    __slots__ = ("current", "holder")

    def __init__(self, second_interrupts: bool = False) -> None:
        self.current: Any = None
        self.holder = _Holder(second_interrupts)

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = _signals.getsignal(_SIGINT)
        if current is None or getattr(current, "holds_interrupts", False):
            return
        self.current = self.holder.current = current
        _signals.signal(_SIGINT, self.holder)

    def __exit__(self, *exc: object) -> None:
        current = self.current
        if current is None:
            return
        _signals.signal(_SIGINT, current)
        held = self.holder.held
        if len(held) == 1:  # (a second one was delivered already)
            _deliver(current, *held[0])


class _Holder:
    """The SIGINT handler inside `interrupts_deferred`: it keeps the signal for later."""

    __slots__ = ("current", "held", "second")
    holds_interrupts = True

    def __init__(self, second_interrupts: bool) -> None:
        self.current: Any = None
        self.held: list[tuple[int, Any]] = []
        self.second = second_interrupts

    def __call__(self, signum: int, frame: Any) -> None:
        self.held.append((signum, frame))
        if self.second and len(self.held) == 2:
            _deliver(self.current, signum, frame)


def _deliver(handler: Any, signum: int, frame: Any) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


# --- gradients ------------------------------------------------------------------------------
def withgradient(f: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
    """``(f(args...), gradient)``: the value and the gradient of scalar ``f`` with respect to
    each argument, a model (→ Tree mirroring it) or an array (→ array). One argument gives one
    gradient, several a tuple. ``f`` must return a scalar Tensor computed from its arguments
    with tinyvec's ops (``float(...)`` or NumPy on ``.data`` would cut the graph).

    >>> import numpy as np, tinyvec as tv
    >>> loss, g = tv.withgradient(lambda x: tv.ops.sum(x * x), np.array([1.0, 2.0]))
    >>> float(loss), g
    (5.0, array([2., 4.]))
    """
    # a Ctrl-C waits for the parameters to be plain arrays again (a second one goes at once)
    with interrupts_deferred(second_interrupts=True):
        return _withgradient(f, args)


def _withgradient(
    f: Callable[..., Any],
    args: tuple[Any, ...],
    check: Callable[[Any], None] | None = None,
    plan: Plan | None = None,
) -> tuple[Any, Any]:
    """`withgradient`, calling ``check(loss)`` between the forward and the backward pass;
    ``plan``: a plan of the (first) model argument that may still be valid."""
    if len(args) == 1 and not is_array(args[0]):  # one model: the usual case
        value, plan, grads = model_gradient(f, args[0], check, plan)
        return value, plan.tree(grads)
    # parameter attributes hold Tensors only inside this call; `tracked` is filled before each
    # swap, so the `finally` restores every swapped one whatever interrupts us
    tracked: list[tuple[Any, str, Any]] = []
    inputs = [Tensor(arg) if is_array(arg) else arg for arg in args]
    plans: list[tuple[Plan, list[Tensor]] | None] = []  # a model's plan and its Tensors
    try:
        for arg in inputs:
            if type(arg) is Tensor:
                plans.append(None)
                continue
            plan = plan_of(arg, plan)
            plans.append((plan, track(plan, tracked)))
            plan = None  # a second model gets its own
        loss = _differentiated(f(*inputs), check)
        grads = [
            x.grad if p is None else p[0].tree([t.grad for t in p[1]])
            for x, p in zip(inputs, plans, strict=True)
        ]
    finally:
        set_all(tracked)  # parameters are plain arrays again, even on error
    return loss.data, grads[0] if len(grads) == 1 else tuple(grads)


def model_gradient(
    f: Callable[[Any], Any],
    model: Any,
    check: Callable[[Any], None] | None = None,
    plan: Plan | None = None,
) -> tuple[Any, Plan, list[Any]]:
    """``(f(model), plan, [∂L/∂x for every parameter x])``, the parameters in the order of
    ``plan.trainables`` (`_withgradient` for one model, without the Tree)."""
    plan = plan_of(model, plan)
    tracked: list[tuple[Any, str, Any]] = []
    try:
        tensors = track(plan, tracked)
        loss = _differentiated(f(model), check)
    finally:
        set_all(tracked)  # parameters are plain arrays again, even on error
    return loss.data, plan, [t.grad for t in tensors]


def _differentiated(loss: Any, check: Callable[[Any], None] | None) -> Tensor:
    """``loss`` after `Tensor.backward`: refused unless it is a scalar Tensor, and after
    ``check(loss)`` (which may refuse it too)."""
    if type(loss) is not Tensor:
        raise TypeError(
            f"the loss must be a Tensor computed from the model with tinyvec's ops, got "
            f"{type(loss).__name__}: do not call float(), .item() or NumPy on .data inside "
            "the loss (that cuts the graph, and every gradient would be None)"
        )
    if loss.ndim != 0:
        raise ValueError(f"gradient needs a scalar loss, got shape {tuple(loss.shape)}")
    if check is not None:
        check(loss.data)
    loss.backward()
    return loss


def track(plan: Plan, tracked: list[tuple[Any, str, Any]]) -> list[Tensor]:
    """Make every parameter of ``plan``'s model a Tensor, a leaf of the graph, and return them;
    each swap is noted in ``tracked`` before it is made, so that ``set_all(tracked)`` puts the
    arrays back whatever interrupts this."""
    tensors = []
    for _, layer, name in plan.trainables:
        value = getattr(layer, name)
        tracked.append((layer, name, value))
        tensor = Tensor(value)
        tensors.append(tensor)
        setattr(layer, name, tensor)
    return tensors


def gradient(f: Callable[..., Any], *args: Any) -> Any:
    """The gradient of scalar ``f`` with respect to each argument (see `withgradient`).

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Dense(1, 1, bias=False, init=lambda shape, rng: np.full(shape, 3.0))
    >>> grads = tv.gradient(lambda m: tv.ops.sum(m(np.ones((1, 1)))), model)
    >>> grads["model.weight"]
    array([[1.]])
    """
    return withgradient(f, *args)[1]


# --- optimiser state and update -------------------------------------------------------------
class Leaf:
    """A parameter's optimiser rule and its state."""

    __slots__ = ("rule", "state")

    def __init__(self, rule: Rule, state: Any) -> None:
        self.rule, self.state = rule, state

    def __repr__(self) -> str:
        return f"Leaf({self.rule!r})"


class StepTransform:
    """Something that changes the step between the gradient and the commit, owned by the
    optimiser state: the δ-rules (`tinyvec.deltarules`) are the ones tinyvec has.

    ``setup(rule, model, delta=[t₁, t₂, …])`` calls ``t₁.bind((t₁, t₂, …), rule)`` once; the
    object it returns has ``rewrite(entries, plan: Plan, model, step: PendingStep) ->
    (grads, records)``: ``entries`` are (path, layer, name, gradient, Leaf) for every
    parameter, ``grads`` the gradients the step is to take instead, in the same order, and
    ``records`` the (object, attribute, value) to set with the step's commit (what it used,
    what it remembers). It changes nothing itself: the step is then the plain one, with those
    gradients. Where it needs a parameter's new value before the others (the δ-rules' sweep),
    it takes that parameter's step early with ``step.propose(...)``."""

    def bind(self, transforms: tuple[Any, ...], rule: Rule) -> Any:  # pragma: no cover
        raise NotImplementedError


class OptState:
    """What `setup` returns: a Tree of Leafs mirroring the model (``tree``), the rule, the
    δ-rules (``delta``, a tuple, empty for plain backprop) and the model's `Plan`."""

    def __init__(
        self,
        rule: Rule,
        tree: Tree,
        delta: tuple[Any, ...] = (),
        transform: Any = None,
        plan: Plan | None = None,
    ) -> None:
        self.rule, self.tree, self.delta = rule, tree, delta
        self.transform, self.plan = transform, plan
        # (plan, tree, its UpdateProgram or None): the plain step written out for them
        self.written: tuple[Any, Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**vars(self), "written": None}  # a program is written again, not copied

    def __repr__(self) -> str:
        delta = f", delta={list(self.delta)!r}" if self.delta else ""
        return f"OptState({self.rule!r}{delta})"


def setup(rule: Rule, model: Any, delta: Any = None) -> OptState:
    """Optimiser state for every parameter of ``model`` (Optimisers.jl's ``setup``).

    ``delta``: a δ-rule or a list of them (`tinyvec.deltarules`), which `update` lets rewrite
    each Dense layer's δ^k before that layer is updated.

    >>> import tinyvec as tv
    >>> tv.setup(tv.Momentum(0.1), tv.Dense(2, 1)).tree["model.weight"]
    Leaf(Momentum(0.1, 0.9))
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"setup takes an optimisation rule such as tv.Descent(0.1), got {rule!r}")
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
        if rules:
            transform = rules[0].bind(rules, rule)
            rules = transform.rules
    plan = plan_of(model)
    tree = plan.mirror(lambda layer, name: Leaf(rule, rule.init(getattr(layer, name))))
    return OptState(rule, tree, rules, transform, plan)


class NonFiniteLoss(FloatingPointError):
    """The loss was NaN or ±inf; training stopped before updating anything."""


class NonFiniteStep(NonFiniteLoss):
    """The step would make a parameter NaN or ±inf (a non-finite gradient: ±inf input, a sqrt
    at 0, an overflow); `update` refused it before changing anything."""


class PendingStep:
    """The next step of every parameter, computed but not yet written: `propose` computes one
    parameter's new value and state; `commit` checks that every new value is finite and writes
    them all (with each layer's ``step`` record and what a transform recorded, such as Dense's
    ``delta_used``)."""

    __slots__ = ("new", "steps", "taken", "writes")

    def __init__(self) -> None:
        self.taken: set[tuple[int, str]] = set()  # (id(layer), name) of the steps proposed
        self.new: list[tuple[str, Any]] = []  # (path, new value): what `commit` checks
        self.writes: list[tuple[Any, str, Any]] = []  # (object, attribute, value)
        self.steps: dict[int, dict[str, Any]] = {}  # id(layer) → its new ``step`` record

    def propose(self, path: str, layer: Any, name: str, leaf: Leaf, g: Any) -> Any:
        """x_new = x - step, (state, step) = rule.apply(state, x, g), in x's dtype. Returns
        x_new; nothing is written yet."""
        x = getattr(layer, name)
        dtype = x.dtype
        if g.dtype != dtype:  # parameters keep their dtype (f64 targets, an f32 model)
            g = namespace(g).astype(g, dtype)
        state, step = leaf.rule.apply(leaf.state, x, g)
        new = x - step
        if new.dtype != dtype:
            step = namespace(step).astype(step, dtype)
            new = x - step
        self.new.append((path, new))
        self.taken.add((id(layer), name))
        steps = self.steps.get(id(layer))
        if steps is None:
            steps = self.steps[id(layer)] = dict(getattr(layer, "step", None) or {})
            self.writes.append((layer, "step", steps))
        steps[name] = step
        self.writes += ((layer, name, new), (leaf, "state", state))
        return new

    def record(self, obj: Any, name: str, value: Any) -> None:
        """Set ``obj.name = value`` with the commit (e.g. a Dense layer's ``delta_used``)."""
        self.writes.append((obj, name, value))

    def commit(self) -> None:
        """Refuse a non-finite step (naming the first parameter), then write everything."""
        new = self.new
        if new:
            # one Python float for the whole step: NaN and ±inf propagate into the sums, so
            # only a non-finite total (or a sum that overflowed) needs the search
            total = sum(_total(a) for _, a in new)
            if not math.isfinite(float(total)):
                refuse_non_finite(new)
        set_all(self.writes)


def _total(a: Any) -> Any:
    """A number that is NaN or ±inf when an entry of ``a`` is (or when it overflows)."""
    if type(a) is np.ndarray:  # Σ a² by BLAS: NumPy's cheapest reduction of a small array
        return np.vdot(a, a)
    return a.sum() if hasattr(a, "sum") else namespace(a).sum(a)  # the method: less dispatch


def refuse_non_finite(new: list[tuple[str, Any]]) -> None:
    """Raise `NonFiniteStep` naming the first parameter whose new value has a NaN or ±inf
    (the elementwise check: a sum can overflow with every entry finite)."""
    for path, a in new:
        if not _finite(a):
            raise NonFiniteStep(
                f"the update would make {path} NaN or ±inf (a non-finite gradient or step): "
                "refused; the model and the optimiser state are unchanged"
            )


def _finite(a: Any) -> bool:
    # one reduction: NaN and ±inf propagate into the sum; only a finite array that overflows
    # when summed needs the elementwise check
    if math.isfinite(float(_total(a))):
        return True
    xp = namespace(a)
    return bool(xp.all(xp.isfinite(a)))


def update(state: OptState, model: Any, grads: Tree) -> None:
    """Apply one step of the optimiser to ``model`` in place: x ← x - step for every
    parameter with a gradient. Each layer keeps what it subtracted in ``layer.step[name]``
    (Dense shows it as ``dW = -step``, ``db``). Atomic: the whole step is computed and checked
    (`NonFiniteStep`) before anything is written."""
    if not isinstance(state, OptState):
        raise TypeError(
            f"update takes the optimiser state, got {type(state).__name__}: call "
            "tv.setup(rule, model) first and pass what it returns: "
            "state = tv.setup(tv.Descent(0.01), model); tv.update(state, model, grads)"
        )
    plan = state.plan = plan_of(model, state.plan)
    program = _written(state, plan)
    gathered = program.gather(grads, state.tree) if program is not None else None
    if gathered is not None and state.transform is None:  # the usual case (`update_program`)
        with interrupts_deferred():
            if program.update(*gathered):
                return
    # the δ-rules, anything unusual, and every error message: the general code
    if gathered is not None and all(g is not None for g in gathered[0]):
        # trees of the model's shape, with every entry: what `plan.zip` would give, read faster
        entries = [(*at, g, leaf) for at, g, leaf in zip(plan.trainables, *gathered, strict=True)]
    else:
        entries = plan.zip((grads, state.tree), ("gradients", "optimiser state"))
    for path, layer, name, g, leaf in entries:  # check everything before computing anything
        if g is not None and (
            (type(g) is not np.ndarray and not is_array(g)) or g.shape != getattr(layer, name).shape
        ):
            shape = tuple(g.shape) if is_array(g) else type(g).__name__
            raise ValueError(
                f"gradients do not match the model: {path} has shape "
                f"{tuple(getattr(layer, name).shape)}, gradient {shape}"
            )
        if not isinstance(leaf, Leaf):
            raise ValueError(f"optimiser state does not match the model at {path}")
    # (a plain step here is one the written update did not take: not tried again)
    take_step(entries, state, plan, model, written=state.transform is not None)


def _written(state: OptState, plan: Plan) -> Any:
    """The UpdateProgram of this state and plan: kept, or written now (None: it cannot be)."""
    written = state.written
    if written is None or written[0] is not plan or written[1] is not state.tree:
        try:
            program = UpdateProgram(plan, UPDATE_HELPERS, state.rule)
        except Exception:  # e.g. a parameter that is not an array: the general code says so
            program = None
        written = state.written = (plan, state.tree, program)
    return written[2]


def take_step(
    entries: list[tuple[Any, ...]], state: OptState, plan: Plan, model: Any, written: bool = True
) -> None:
    """The step of every parameter of ``entries`` (path, layer, name, gradient, Leaf), its
    gradients rewritten first by the state's transform (the δ-rules) when there is one, and
    committed at once, with Ctrl-C held back until it is written. ``written``: through the
    written update when it takes the step (False: the general code, `PendingStep`)."""
    with interrupts_deferred():
        step = PendingStep()
        records: list[tuple[Any, str, Any]] = []
        if state.transform is not None:
            grads, records = state.transform.rewrite(entries, plan, model, step)
        else:
            grads = [entry[3] for entry in entries]
        # the written update takes every step (unless the transform took some already)
        program = _written(state, plan) if written and not step.new else None
        if program is not None and program.update(grads, [e[4] for e in entries], records):
            return
        taken = step.taken  # (the steps the transform took already)
        for (path, layer, name, _, leaf), g in zip(entries, grads, strict=True):
            if g is not None and (id(layer), name) not in taken:
                step.propose(path, layer, name, leaf, g)
        for obj, name, value in records:
            step.record(obj, name, value)
        step.commit()


# what a written update calls (`update_program`)
UPDATE_HELPERS = {"Leaf": Leaf, "refuse_non_finite": refuse_non_finite, "norm2": _total}
