"""`tv.compile`: one training step planned once and replayed as straight-line Python.

The default step (`withgradient` + `update`) is general: every call walks the model, wraps
each parameter in a Tensor, builds a graph node per layer, sorts the graph, and mirrors and
zips gradient trees. For a model made of Dense, Chain, SkipConnection and Parallel layers all
of that is the same at every step, so `compile_step` does it once: from the model's `Plan` it
writes the forward and the backward pass of the model as plain Python over arrays, with the
formulas in comments (``step.source`` shows it), and replays it. The loss is still yours and
still differentiated by the engine: inside the compiled step the loss receives a stand-in for
the model whose call runs the compiled forward pass and returns a Tensor without a graph; the
gradient that reaches it is fed to the compiled backward pass. Without δ-rules the update is
written out too: per parameter the same ``rule.apply`` call and subtraction as `tv.update`, one
finiteness check for the whole step (a sum of sums, searched only when it is not finite) and one
atomic commit; with δ-rules it is `tv.update`'s own code (`take_step`).

It is bit-identical to ``withgradient`` + ``update``: the same array operations in the same
order (each array is summed from at most two contributions, and a + b is b + a exactly), and
every record is kept: each Dense layer's input, preact, output, delta, delta_used and step
(dW, db), and the containers' input, so the `Recorder` and the δ-rules work unchanged.

When it cannot compile, it says why in ``step.fallback`` and runs the default step instead
(same results, default speed): a layer it does not know (a custom layer, a shared layer, a
connection other than +/vcat, a value used by more than two layers), or a loss that reads the
model other than by calling it once. It writes a new program when the model's structure
changes (`Plan.valid`), when the input's features, dtype or array type or a parameter's dtype
change, and when the optimiser state's tree or δ-rules are replaced; an input it cannot take
(wrong shape) goes to the default step, which raises the usual error.

You can skip this module when reading the engine: it is an optimisation of `tv.update`'s
caller, nothing more.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from ..backend import namespace
from ..engine.ops import vcat
from ..engine.plan import Plan, plan_of
from ..engine.tensor import Tensor
from ..layers.containers import Chain, Parallel, SkipConnection, add
from ..layers.dense import Dense
from .training import (
    Leaf,
    OptState,
    PendingStep,
    _withgradient,
    interrupts_deferred,
    refuse_non_finite,
    set_all,
    take_step,
    update,
)

__all__ = ["CompiledStep", "compile_step"]


class _Fallback(BaseException):
    """This step cannot run compiled (a BaseException: a loss's ``except Exception`` must not
    swallow it). ``always``: no later step can either."""

    def __init__(self, reason: str, always: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.always = reason, always


class _ModelCall:
    """What the loss receives as the model in a compiled step: calling it runs the compiled
    forward pass (once); reading anything else from it means the loss needs the real model."""

    __slots__ = ("out", "program", "step")

    def __init__(self, step: CompiledStep) -> None:
        self.step = step
        self.program: _Program | None = None
        self.out: Tensor | None = None

    def __call__(self, x: Any) -> Tensor:
        if self.out is not None:
            raise _Fallback("the loss calls the model more than once")
        self.program = program = self.step._prepare(x)
        out = self.out = Tensor(program.forward(x))
        return out

    def __getattr__(self, name: str) -> Any:
        raise _Fallback(f"the loss reads model.{name} (not only the model's output)")

    # Python looks these up on the type, not through __getattr__
    def __getitem__(self, index: Any) -> Any:
        raise _Fallback(f"the loss reads model[{index!r}] (not only the model's output)")

    def __len__(self) -> int:
        raise _Fallback("the loss reads len(model) (not only the model's output)")

    def __iter__(self) -> Any:
        raise _Fallback("the loss iterates over the model (not only its output)")


class _Program:
    """The generated forward and backward pass of one model for one kind of input."""

    __slots__ = ("backward", "forward", "params", "source", "update")

    def __init__(self, source: str, scope: dict[str, Any], params: list[tuple[str, Any, str]]):
        self.source, self.params = source, params
        exec(compile(source, "<tinyvec compiled step>", "exec"), scope)  # our own generated code
        self.forward: Callable[[Any], Any] = scope["forward"]
        self.backward: Callable[[Any], list[Any]] = scope["backward"]
        self.update: Callable[..., bool] | None = scope.get("update")


# --- code generation ------------------------------------------------------------------------
_CONNECTIONS = {add: "+", operator.add: "+", vcat: "vcat"}


class _Writer:
    """Writes the program from the plan: values v0 (the input), v1, …; one block of forward
    lines per op, and the op kept for the backward pass, written afterwards in reverse."""

    def __init__(self, plan: Plan, x: Any) -> None:
        self.plan, self.x = plan, x
        self.scope: dict[str, Any] = {"Fallback": _Fallback}
        self.forward: list[str] = []
        self.ops: list[tuple[Any, ...]] = []
        self.rows = {"v0": x.shape[0]}  # features of each value
        self.tracked = {"v0": False}  # whether a value depends on a parameter
        self.uses = {"v0": 0}
        self.params: list[tuple[str, Any, str]] = []
        self.guards: list[str] = []  # parameter dtypes checked at every step
        self.updates: list[tuple[int, str, list[tuple[str, str]]]] = []  # (k, layer, params)
        self.dense = self.containers = 0
        # NumPy's method is its function without the dispatch (the same reduction, bit for bit)
        self.method_sum = type(x).__module__ == "numpy"
        self.count = 0
        self.dtype = x.dtype

    def value(self, rows: int, tracked: bool) -> str:
        self.count += 1
        name = f"v{self.count}"
        self.rows[name], self.tracked[name], self.uses[name] = rows, tracked, 0
        return name

    def const(self, name: str, obj: Any) -> str:
        """Give ``obj`` a name in the program (a layer, an activation function)."""
        if name in self.scope:
            name = f"{name}_{len(self.scope)}"
        self.scope[name] = obj
        return name

    def use(self, v: str) -> None:
        self.uses[v] += 1
        if self.uses[v] > 2:
            raise _Fallback(f"a value is used by more than two layers ({v})")

    def layer(self, index: int, v: str) -> str:
        node = self.plan.nodes[index]
        layer = node.layer
        if not node.first:
            raise _Fallback(f"{node.path} is a shared layer")
        kind = type(layer)
        if kind is Dense:
            return self.dense_layer(node, v)
        if kind is Chain:
            ((_, kids, _),) = node.slots or [("layers", [], True)]
            self.record(node, v)
            for k in kids:
                v = self.layer(k, v)
            return v
        if kind is SkipConnection:
            self.record(node, v)
            ((_, kids, _),) = node.slots
            y = self.layer(kids[0], v)
            return self.connect(node, layer.connection, [y, v])
        if kind is Parallel:
            self.record(node, v)
            kids = node.slots[0][1] if node.slots else []
            ys = []
            for k in kids:
                ys.append(self.layer(k, v))
            if not ys:
                raise _Fallback(f"{node.path} is an empty Parallel")
            return self.connect(node, layer.connection, ys)
        raise _Fallback(f"{node.path} is a {kind.__name__}, which tv.compile does not know")

    def record(self, node: Any, v: str) -> None:
        self.forward.append(
            f"    {self.const(f'{type(node.layer).__name__.lower()}{self.count}', node.layer)}"
            f".input = {v}  # {node.path} keeps its input"
        )

    def connect(self, node: Any, connection: Any, ys: list[str]) -> str:
        symbol = _CONNECTIONS.get(connection)
        if symbol is None:
            raise _Fallback(f"{node.path}: tv.compile knows the connections + and vcat only")
        if len(ys) == 1 and symbol == "+":
            return ys[0]
        for y in ys:
            self.use(y)
        tracked = any(self.tracked[y] for y in ys)
        if symbol == "+":
            if len({self.rows[y] for y in ys}) != 1:
                raise _Fallback(f"{node.path}: + of values of different sizes would broadcast")
            acc = ys[0]
            for y in ys[1:]:  # left to right, as functools.reduce in tv.add
                out = self.value(self.rows[y], tracked)
                self.forward.append(f"    {out} = {acc} + {y}  # {node.path}: +")
                self.ops.append(("add", acc, y, out))
                acc = out
            return acc
        out = self.value(sum(self.rows[y] for y in ys), tracked)
        self.forward.append(
            f"    {out} = xp.concat(({', '.join(ys)},), axis=0)  # {node.path}: vcat"
        )
        self.ops.append(("vcat", ys, out))
        return out

    def dense_layer(self, node: Any, v: str) -> str:
        layer = node.layer
        W, b = layer.weight, layer.bias
        if W.dtype != self.dtype or (b is not None and b.dtype != self.dtype):
            raise _Fallback(f"{node.path} has {W.dtype} parameters and the input is {self.dtype}")
        if self.rows[v] != W.shape[1]:
            raise _Fallback(
                f"{node.path} expects {W.shape[1]} features, gets {self.rows[v]}", False
            )
        self.use(v)
        self.dense += 1
        k = self.dense
        L = self.const(f"dense{k}", layer)
        f = self.const(f"sigma{k}", layer.sigma.f)
        identity = layer.sigma.derivative is None
        bp = None if identity else self.const(f"backprop{k}", layer.sigma.backprop)
        out = self.value(W.shape[0], True)
        A = f"A{k}"
        lines = [
            f"    # {node.path}: {layer!r}",
            f"    W{k} = {L}.weight",
            f"    {A} = W{k} @ {v}  # A^{k} = W^{k} O^{k - 1} + b^{k}",
        ]
        if b is not None:
            lines += [f"    b{k} = {L}.bias", f"    {A} = {A} + b{k}[:, None]"]
        lines += [
            f"    {out} = {f}({A})  # O^{k} = σ(A^{k}), σ = {layer.sigma!r}",
            f"    {L}.input, {L}.preact, {L}.output = {v}, {A}, {out}",
        ]
        self.forward += lines
        self.guards.append(f"{L}.weight.dtype != DT")
        if b is not None:
            self.guards.append(f"{L}.bias.dtype != DT")
        names = [name for name in node.present]
        self.params += [(f"{node.path}.{name}", layer, name) for name in names]
        self.updates.append((k, L, [(name, f"{node.path}.{name}") for name in names]))
        self.ops.append(("dense", k, L, bp, v, out, b is not None))
        return out

    def write(
        self, leaves: dict[str, Leaf] | None = None
    ) -> tuple[str, dict[str, Any], list[tuple[str, Any, str]]]:
        """(source, the names it uses, the parameters its backward returns, in order).
        ``leaves`` (path → optimiser Leaf): also write the update (without δ-rules)."""
        self.scope["xp"] = namespace(self.x)
        self.scope["ARRAY"], self.scope["DT"], self.scope["IN"] = (
            type(self.x),
            self.x.dtype,
            self.x.shape[0],
        )
        out = self.layer(0, "v0")
        if not self.tracked[out]:
            raise _Fallback("the model's output does not depend on any parameter")
        head = [
            "def forward(v0):",
            '    """The model on input v0 (features × batch): every value, every record."""',
            "    if type(v0) is not ARRAY or v0.ndim != 2 or v0.shape[0] != IN or v0.dtype != DT:",
            "        raise Fallback('another kind of input', False)",
        ]
        if self.guards:
            head += [
                f"    if {' or '.join(self.guards)}:",
                "        raise Fallback('a parameter changed dtype', False)",
            ]
        forward = head + self.forward + [f"    return {out}", ""]
        back = self.backward(out)
        if leaves is not None:
            back += ["", *self.update(leaves)]
        return "\n".join(forward + back) + "\n", self.scope, self.params

    def update(self, leaves: dict[str, Leaf]) -> list[str]:
        """`tv.update`'s step as straight lines: the same ``rule.apply`` per parameter (read
        from its Leaf at every step, so a rule replaced in the state is used), one finiteness
        check for the whole step, one commit. Anything unusual (a gradient or a new value of
        another dtype) returns False before writing: `tv.update`'s general code takes it."""
        self.scope["isfinite"] = math.isfinite
        total = "xp.sum(new_{})"
        if self.method_sum:  # NumPy: Σ x² by BLAS is its cheapest reduction (an overflow at
            import numpy  # |x| ~ 1e154 only costs the search, which finds nothing)

            self.scope["vdot"], total = numpy.vdot, "vdot(new_{0}, new_{0})"
        self.scope.update(set_all=set_all, refuse_non_finite=refuse_non_finite)
        order = [(k, L, name, path) for k, L, params in self.updates for name, path in params]
        x = {"weight": "W", "bias": "b"}
        names = [f"{x[name]}{k}" for k, _, name, _ in order]
        lines = [
            f"def update({', '.join('g' + n for n in names)}):",
            '    """x ← x - step, (state, step) = rule.apply(state, x, ∂L/∂x), for every parameter:',
            "    all computed and checked (finite) before one commit writes them. False: nothing",
            '    written (a dtype changed: the general update casts)."""',
            "    total = 0.0  # NaN and ±inf propagate into it: only a non-finite total needs a search",
        ]
        leaf_of: dict[str, str] = {}
        for (_, L, name, path), n in zip(order, names, strict=True):
            leaf = leaf_of[n] = self.const(f"leaf_{n}", leaves[path])
            lines += [
                f"    # {path}",
                f"    {n} = {L}.{name}",
                f"    state_{n}, step_{n} = {leaf}.rule.apply({leaf}.state, {n}, g{n})",
                f"    new_{n} = {n} - step_{n}  # {n} ← {n} - step",
                f"    if g{n}.dtype != DT or new_{n}.dtype != DT:",
                "        return False",
                f"    total = total + {total.format(n)}",
            ]
        lines += [
            "    if not isfinite(float(total)):",
            "        refuse_non_finite([",
            *(
                f"            ({path!r}, new_{n}),"
                for (*_, path), n in zip(order, names, strict=True)
            ),
            "        ])",
            "    set_all([  # the commit",
        ]
        for k, L, params in self.updates:
            record = ", ".join(f'"{name}": step_{x[name]}{k}' for name, _ in params)
            lines.append(f'        ({L}, "step", {{**({L}.step or {{}}), {record}}}),')
            for name, _ in params:
                n = f"{x[name]}{k}"
                lines.append(
                    f'        ({L}, "{name}", new_{n}), ({leaf_of[n]}, "state", state_{n}),'
                )
        lines += ["    ])", "    return True"]
        return lines

    def backward(self, out: str) -> list[str]:
        lines = [
            f"def backward(g_{out}):",
            '    """∂L/∂(model output) → the gradient of every parameter, recording δ^k."""',
        ]
        has: set[str] = {out}
        grads: dict[int, list[str]] = {}

        def give(v: str, expr: str) -> None:
            if not self.tracked[v]:
                return
            if v in has:
                lines.append(f"    g_{v} = g_{v} + {expr}")
            else:
                lines.append(f"    g_{v} = {expr}")
                has.add(v)

        for op in reversed(self.ops):
            if op[0] == "add":
                _, a, y, res = op
                if res in has:
                    give(a, f"g_{res}")
                    give(y, f"g_{res}")
            elif op[0] == "vcat":
                _, ys, res = op
                if res in has:
                    start = 0
                    for y in ys:  # the rows each input gave, as the engine's concat vjp
                        end = start + self.rows[y]
                        give(y, f"g_{res}[{start}:{end}, :]")
                        start = end
            else:
                _, k, L, bp, v, res, bias = op
                if res not in has:
                    continue
                d = f"d{k}"
                lines.append(
                    f"    # {L}: layer {k} (A, O, input as the forward pass recorded them)"
                )
                if bp is None:
                    lines.append(f"    {d} = g_{res}  # δ^{k} = ∂L/∂O^{k} (σ = identity)")
                else:
                    lines.append(
                        f"    {d} = {bp}(g_{res}, {L}.preact, {L}.output)"
                        f"  # δ^{k} = ∂L/∂O^{k} ⊙ σ′(A^{k})"
                    )
                lines.append(f"    {L}.delta, {L}.delta_used = {d}, None")
                give(v, f"{L}.weight.mT @ {d}  # ∂L/∂O^{k - 1} = W^{k}ᵀ δ^{k}")
                lines.append(f"    gW{k} = {d} @ {L}.input.mT  # ∂L/∂W^{k} = δ^{k} O^{k - 1}ᵀ")
                grads[k] = [f"gW{k}"]
                if bias:
                    total = f"{d}.sum(axis=1)" if self.method_sum else f"xp.sum({d}, axis=1)"
                    lines.append(f"    gb{k} = {total}  # ∂L/∂b^{k} = Σ_batch δ^{k}")
                    grads[k].append(f"gb{k}")
        order = [g for k in sorted(grads) for g in grads[k]]
        lines.append(f"    return [{', '.join(order)}]")
        return lines


# --- the compiled step ----------------------------------------------------------------------
class CompiledStep:
    """``step(*batch) -> loss``: one training step of ``loss(model, *batch)``, as
    ``withgradient`` + ``update`` computes it (see the module text). ``step.source`` is the
    generated program, ``step.fallback`` why it runs the default step instead (or None)."""

    def __init__(self, loss: Callable[..., Any], model: Any, state: OptState) -> None:
        if not isinstance(state, OptState):
            raise TypeError(
                f"compile takes the optimiser state, got {type(state).__name__}: call "
                "tv.setup(rule, model) first and pass what it returns"
            )
        if not callable(loss):
            raise TypeError(f"compile takes a loss function loss(model, *batch), got {loss!r}")
        self.loss, self.model, self.state = loss, model, state
        self.fallback: str | None = None
        self._plan: Plan | None = None
        self._program: _Program | None = None
        self._key: tuple[Any, ...] = ()
        self._slots: list[tuple[str, Any, str, Leaf]] = []

    def __repr__(self) -> str:
        how = f"default step: {self.fallback}" if self.fallback else "compiled"
        return f"<tv.compile of {type(self.model).__name__} ({how})>"

    @property
    def source(self) -> str:
        """The generated program (compiled at the first step, so call the step once first)."""
        if self._program is None:
            return f"# not compiled{': ' + self.fallback if self.fallback else ' yet'}\n"
        return self._program.source

    def __call__(self, *batch: Any) -> Any:
        return self.run(batch)

    def run(self, batch: tuple[Any, ...], check: Callable[[Any], None] | None = None) -> Any:
        """One step on ``batch``; ``check(loss)`` runs between the forward and backward pass
        (`tv.train` refuses a non-finite loss there). A Ctrl-C takes effect after the step, as
        in `tv.train` (a second one at once)."""
        with interrupts_deferred(second_interrupts=True):
            if self.fallback is None:
                try:
                    return self._compiled(batch, check)
                except _Fallback as why:
                    if why.always:
                        self.fallback, self._program = why.reason, None
            return self._default(batch, check)

    def _default(self, batch: tuple[Any, ...], check: Callable[[Any], None] | None) -> Any:
        value, grads = _withgradient(lambda m: self.loss(m, *batch), (self.model,), check)
        update(self.state, self.model, grads)
        return value

    def _prepare(self, x: Any) -> _Program:
        """The program for this model, state and kind of input: kept, or written now."""
        plan = plan_of(self.model, self._plan)
        state = self.state
        key = (plan, state.tree, state.transform, type(x), getattr(x, "dtype", None))
        program = self._program
        if program is None or key != self._key:
            if not hasattr(x, "shape") or getattr(x, "ndim", 0) != 2:
                raise _Fallback("the model's input is not a features × batch array", False)
            leaves = {
                path: leaf for path, _, _, leaf in plan.zip((state.tree,), ("optimiser state",))
            }
            # the δ-rules rewrite the step layer by layer: their update stays `take_step`'s
            plain = state.transform is None and all(type(v) is Leaf for v in leaves.values())
            program = _Program(*_Writer(plan, x).write(leaves if plain else None))
            params = program.params
            self._slots = [(path, layer, name, leaves[path]) for path, layer, name in params]
            if len(self._slots) != len(plan.trainables):
                raise _Fallback("some parameters are outside the layers tv.compile knows")
            self._plan, self._program, self._key = plan, program, key
        return program

    def _compiled(self, batch: tuple[Any, ...], check: Callable[[Any], None] | None) -> Any:
        call = _ModelCall(self)
        loss = self.loss(call, *batch)
        program = call.program
        if type(loss) is not Tensor or loss.ndim != 0 or call.out is None or program is None:
            # the default step gives the error (or handles a loss that ignores the model)
            raise _Fallback("the loss is not a scalar Tensor of the model's output", False)
        if check is not None:
            check(loss.data)
        loss.backward()
        g = call.out.grad
        grads = program.backward(g) if g is not None else [None] * len(program.params)
        # (Ctrl-C is held by `run` for the whole step, the update included)
        if program.update is not None and g is not None and program.update(*grads):
            return loss.data
        step = PendingStep(
            [
                (path, layer, name, grad, leaf)
                for (path, layer, name, leaf), grad in zip(self._slots, grads, strict=True)
            ]
        )
        assert self._plan is not None  # `_prepare` made it, with the program
        take_step(step, self.state, self._plan, self.model)
        return loss.data


def compile_step(loss: Callable[..., Any], model: Any, state: OptState) -> CompiledStep:
    """``step = tv.compile(loss, model, state)``; then ``step(*batch)`` does what
    ``tv.update(state, model, tv.gradient(lambda m: loss(m, *batch), model))`` does, bit for
    bit, and returns the loss: the step planned once and replayed (see the module text).

    >>> import numpy as np, tinyvec as tv
    >>> loss = lambda m, x, y: tv.mse(m(x), y)
    >>> a, b = (tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1)) for _ in "ab")
    >>> sa, sb = tv.setup(tv.Descent(0.1), a), tv.setup(tv.Descent(0.1), b)
    >>> step = tv.compile(loss, a, sa)
    >>> x, y = np.linspace(-1, 1, 8).reshape(2, 4), np.zeros((1, 4))
    >>> for _ in range(3):
    ...     compiled = step(x, y)
    ...     default, grads = tv.withgradient(lambda m: loss(m, x, y), b)
    ...     tv.update(sb, b, grads)
    >>> bool(compiled == default), bool((a[0].weight == b[0].weight).all()), step.fallback
    (True, True, None)
    >>> print(step.source.splitlines()[0])
    def forward(v0):
    """
    return CompiledStep(loss, model, state)
