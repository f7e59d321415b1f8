"""A Chain of Dense, SkipConnection and Parallel layers as one straight-line program.

Calling a Chain layer by layer makes a graph node per layer and checks every input on the
way; for a model built from the layers below, all of that is the same at every call. So the
first call writes the model's forward and backward pass once, as plain Python over arrays
with the formulas in comments, and later calls replay it: the Chain becomes *one* graph node
whose vjp is the written backward pass (`fused_call`). `tv.compile` uses the same program for
its training step. ``Plan.fused`` keeps the programs of a model, so a new structure writes
new ones.

Nothing changes in what you can see: every Dense layer records its input, preact and output
in the forward pass and its delta in the backward pass, the containers their input, and the
numbers are the same bit for bit as layer by layer (the same array operations in the same
order; a value receives at most two cotangents, and a + b is b + a exactly). What differs is
the graph: a Chain's output has one node, ``op == "Chain"``, with the input and every
parameter as its parents. Inside ``with tv.layers.fused.unfused():`` Chains run layer by
layer, one node per layer (to look at the graph, or to compare).

A model it cannot write (a custom layer, a shared layer, a connection other than + and vcat,
a value used by more than two layers, parameters of another dtype than the input) simply
runs layer by layer; so does any call it is not sure of (an input of another kind or shape,
a δ-rule's sweep, which replaces Dense's forward pass).

You can skip this module when reading the engine: it is an optimisation of `Chain.__call__`.
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import namespace
from ..engine.activations import FORMULAS
from ..engine.ops import vcat
from ..engine.plan import Plan, plan_of
from ..engine.tensor import Tensor, data, grad_enabled, setting
from .dense import Dense, _forward_override

__all__ = ["Fallback", "Program", "fused_call", "fusing", "program_for", "unfused", "write_program"]

# Per context, like `no_grad`: another thread's `unfused()` block changes nothing here.
_fusing: contextvars.ContextVar[bool] = contextvars.ContextVar("tinyvec_fused", default=True)


def unfused() -> contextlib.AbstractContextManager[None]:
    """Inside this block (in this thread) every Chain runs layer by layer, one graph node per
    layer, as written in `Chain.__call__`: the reference the programs are tested against.

    >>> import numpy as np, tinyvec as tv
    >>> m = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
    >>> x = tv.Tensor(np.ones((2, 4)))
    >>> m(x).op
    'Chain'
    >>> with unfused():
    ...     m(x).op
    'Dense'
    """
    return setting(_fusing, False)


class Fallback(Exception):
    """This model, or this call, cannot run as a program: it runs layer by layer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Program:
    """The written forward and backward pass of one model for one kind of input:

    - ``params()``: the parameter attributes, in order (arrays, or Tensors inside a gradient);
    - ``forward(v0, *param arrays) -> (output, saved)``, recording on the layers;
    - ``backward(g, saved) -> [∂L/∂v0 or None, ∂L/∂param₁, …]``, recording δ^k;
    - ``paths``: the parameters' `tv.trainables` paths, in the same order;
    - ``exact_grads``: whether ∂L/∂(output) of the output's dtype and shape gives every
      parameter a gradient of its own dtype and shape, by construction (every parameter is
      reached, and every activation's derivative is a built-in formula, not a function).
    """

    __slots__ = ("backward", "exact_grads", "forward", "params", "paths", "scope", "source")

    def __init__(
        self, source: str, scope: dict[str, Any], paths: list[str], exact_grads: bool = False
    ) -> None:
        self.source, self.scope, self.paths = source, scope, paths
        self.exact_grads = exact_grads
        exec(compile(source, "<tinyvec program>", "exec"), scope)  # our own generated code
        self.params: Callable[[], list[Any]] = scope["params"]
        self.forward: Callable[..., tuple[Any, Any]] = scope["forward"]
        self.backward: Callable[[Any, Any], tuple[Any, ...]] = scope["backward"]


# --- code generation ------------------------------------------------------------------------
_CONNECTIONS = {operator.add: "+", vcat: "vcat"}


def _connection(f: Any) -> str | None:
    from .containers import add  # (containers imports this module)

    return "+" if f is add else _CONNECTIONS.get(f)


class _Writer:
    """Writes the program from the plan: values v0 (the input), v1, …; one block of forward
    lines per op, and the op kept for the backward pass, written afterwards in reverse."""

    def __init__(self, plan: Plan, x: Any, input_grad: bool) -> None:
        self.plan, self.x = plan, x
        self.scope: dict[str, Any] = {"Fallback": Fallback}
        self.forward: list[str] = []
        self.ops: list[tuple[Any, ...]] = []
        self.rows = {"v0": x.shape[0]}  # features of each value
        self.tracked = {"v0": input_grad}  # whether a value needs its cotangent
        self.uses = {"v0": 0}
        self.args: list[str] = []  # the forward pass's parameter arguments: W1, b1, …
        self.paths: list[str] = []
        self.reads: list[str] = []  # what `params()` reads: dense1.weight, …
        self.saved: list[str] = []  # what the backward pass needs from the forward pass
        self.dense = 0
        # NumPy: the ufunc's reduction, what np.sum calls, without its Python wrapper
        self.numpy = type(x).__module__ == "numpy"
        self.count = 0
        self.dtype = x.dtype
        self.exact_grads = True  # (see Program)

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
            raise Fallback(f"a value is used by more than two layers ({v})")

    def layer(self, index: int, v: str) -> str:
        from .containers import Chain, Parallel, SkipConnection

        node = self.plan.nodes[index]
        layer = node.layer
        if not node.first:
            raise Fallback(f"{node.path} is a shared layer")
        kind = type(layer)
        if {"forward", "__call__"} & set(getattr(layer, "__dict__", ())):
            raise Fallback(f"{node.path} has a forward pass of its own (set on the layer)")
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
                raise Fallback(f"{node.path} is an empty Parallel")
            return self.connect(node, layer.connection, ys)
        raise Fallback(f"{node.path} is a {kind.__name__}, which a program cannot hold")

    def record(self, node: Any, v: str) -> None:
        self.forward.append(
            f"    {self.const(f'{type(node.layer).__name__.lower()}{self.count}', node.layer)}"
            f".input = {v}  # {node.path} keeps its input"
        )

    def connect(self, node: Any, connection: Any, ys: list[str]) -> str:
        symbol = _connection(connection)
        if symbol is None:
            raise Fallback(f"{node.path}: a program knows the connections + and vcat only")
        if len(ys) == 1 and symbol == "+":
            return ys[0]
        for y in ys:
            self.use(y)
        tracked = any(self.tracked[y] for y in ys)
        if symbol == "+":
            if len({self.rows[y] for y in ys}) != 1:
                raise Fallback(f"{node.path}: + of values of different sizes would broadcast")
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
        W, b = data(layer.weight), data(layer.bias)  # (Tensors inside a gradient)
        if W.dtype != self.dtype or (b is not None and b.dtype != self.dtype):
            raise Fallback(f"{node.path} has {W.dtype} parameters and the input is {self.dtype}")
        if self.rows[v] != W.shape[1]:
            raise Fallback(f"{node.path} expects {W.shape[1]} features, gets {self.rows[v]}")
        self.use(v)
        self.dense += 1
        k = self.dense
        L = self.const(f"dense{k}", layer)
        sigma = layer.sigma
        out = self.value(W.shape[0], True)
        A = f"A{k}"
        lines = [
            f"    # {node.path}: {layer!r}",
            f"    {A} = W{k} @ {v}  # A^{k} = W^{k} O^{k - 1} + b^{k}",
        ]
        self.args.append(f"W{k}")
        self.reads.append(f"{L}.weight")
        if b is not None:
            lines.append(f"    {A} += b{k}[:, None]  # (in place: A is new, and of b's dtype)")
            self.args.append(f"b{k}")
            self.reads.append(f"{L}.bias")
        formula = FORMULAS.get(sigma)
        if formula is not None:
            f = _fill(formula[0], A=A)
            bp = _fill(formula[1], A=A, O=out)  # (g: filled in by the backward pass)
        else:
            f = f"{self.const(f'sigma{k}', sigma.f)}({A})"
            self.exact_grads = False  # (a derivative of your own may change dtype or shape)
            bp = None
            if sigma.derivative is not None:
                bp = f"{self.const(f'backprop{k}', sigma.backprop)}(g, {A}, {out})"
        lines += [
            f"    {out} = {f}  # O^{k} = σ(A^{k}), σ = {sigma!r}",
            f"    {L}.input, {L}.preact, {L}.output = {v}, {A}, {out}",
        ]
        self.forward += lines
        self.paths += [path for _, path in node.named]
        self.saved += [v, f"W{k}", A, out]
        self.ops.append(("dense", k, L, bp, v, out, b is not None))
        return out

    def write(self) -> tuple[list[str], dict[str, Any], list[str]]:
        """(the program's lines, the names they use, the parameters' paths in order)."""
        self.scope["xp"] = namespace(self.x)
        self.scope["add_reduce"] = np.add.reduce
        self.scope["ARRAY"], self.scope["DT"], self.scope["IN"] = (
            type(self.x),
            self.x.dtype,
            self.x.shape[0],
        )
        out = self.layer(0, "v0")
        if not self.tracked[out]:
            raise Fallback("the model's output does not depend on any parameter")
        args = ", ".join(self.args)
        dtypes = " or ".join(f"{a}.dtype is not DT" for a in self.args)
        params = [
            "def params():",
            '    """The parameters, in the order of the forward pass\'s arguments."""',
            f"    return [{', '.join(self.reads)}]",
        ]
        head = [
            f"def forward(v0, {args}):",
            '    """The model on input v0 (features × batch): every value, every record."""',
            # `is not`: NumPy's dtypes are singletons; an equal but other dtype object only
            # costs the layer-by-layer call
            "    if type(v0) is not ARRAY or v0.ndim != 2 or v0.shape[0] != IN or v0.dtype is not DT:",
            "        raise Fallback('another kind of input')",
            f"    if {dtypes}:",
            "        raise Fallback('a parameter changed dtype')",
        ]
        saved = list(dict.fromkeys(self.saved))
        forward = head + self.forward + [f"    return {out}, ({', '.join(saved)},)", ""]
        return forward + self.backward(out, saved) + [""] + params, self.scope, self.paths

    def backward(self, out: str, saved: list[str]) -> list[str]:
        lines = [
            f"def backward(g_{out}, saved):",
            '    """∂L/∂(model output) → [∂L/∂v0, ∂L/∂(each parameter)], recording δ^k."""',
            f"    {', '.join(saved)}, = saved",
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
                d = f"d{k}"
                grads[k] = [f"gW{k}"] + ([f"gb{k}"] if bias else [])
                if res not in has:  # the output reached no loss: no gradient
                    self.exact_grads = False
                    lines.append(f"    {' = '.join(grads[k])} = None")
                    continue
                lines.append(f"    # {L}: layer {k}")
                if bp is None:
                    lines.append(f"    {d} = g_{res}  # δ^{k} = ∂L/∂O^{k} (σ = identity)")
                else:
                    lines.append(
                        f"    {d} = {_fill(bp, g=f'g_{res}')}  # δ^{k} = ∂L/∂O^{k} ⊙ σ′(A^{k})"
                    )
                lines.append(f"    {L}.delta, {L}.delta_used = {d}, None")
                give(v, f"W{k}.mT @ {d}  # ∂L/∂O^{k - 1} = W^{k}ᵀ δ^{k}")
                lines.append(f"    gW{k} = {d} @ {v}.mT  # ∂L/∂W^{k} = δ^{k} O^{k - 1}ᵀ")
                if bias:
                    total = f"add_reduce({d}, 1)" if self.numpy else f"xp.sum({d}, axis=1)"
                    lines.append(f"    gb{k} = {total}  # ∂L/∂b^{k} = Σ_batch δ^{k}")
        order = [g for k in sorted(grads) for g in grads[k]]
        first = "g_v0" if self.tracked["v0"] and "v0" in has else "None"
        lines.append(f"    return {first}, {', '.join(order)}")
        return lines


def _fill(formula: str, **names: str) -> str:
    """``formula`` with its variables A, O, g renamed (whole words only)."""
    return re.sub(r"\b[AOg]\b", lambda m: names.get(m.group(), m.group()), formula)


def write_program(plan: Plan, x: Any, input_grad: bool = False) -> Program:
    """The program of ``plan``'s model for inputs like ``x`` (``input_grad``: its backward
    pass also gives ∂L/∂x); raises `Fallback` when it cannot be written."""
    writer = _Writer(plan, x, input_grad)
    lines, scope, paths = writer.write()
    return Program("\n".join(lines) + "\n", scope, paths, writer.exact_grads)


# --- the fused call -------------------------------------------------------------------------
def fusing() -> bool:
    """Whether Chains run as their programs here: not inside `unfused` or a δ-rule's sweep
    (which replaces Dense's forward pass). Asked first, before any work on the model."""
    return _fusing.get() and _forward_override.get() is None


def program_for(plan: Plan, O: Any, tensor_in: bool = False) -> Program | None:
    """The program of ``plan``'s Chain for input array ``O`` (written at the first call of its
    kind), or None: the Chain runs layer by layer (an input that is not features × batch, a
    model it cannot write; see the module text). Only where `fusing`."""
    if getattr(O, "ndim", None) != 2:
        return None
    key = (type(O), O.dtype, O.shape[0], tensor_in)
    program = plan.fused.get(key)
    if program is None:
        try:
            program = write_program(plan, O, tensor_in)
        except Fallback as why:
            program = why.reason  # remembered: this kind of input runs layer by layer
        plan.fused[key] = program
    return program if isinstance(program, Program) else None


def fused_call(chain: Any, x: Any) -> Any:
    """``chain(x)`` through its program, as one graph node; None when it must run layer by
    layer (see the module text)."""
    if not fusing():
        return None
    tensor_in = type(x) is Tensor
    O = x.data if tensor_in else x
    program = program_for(plan_of(chain), O, tensor_in)
    if program is None:
        return None
    params = program.params()
    arrays, tracked = [], tensor_in
    for p in params:
        if type(p) is Tensor:
            arrays.append(p.data)
            tracked = True
        else:
            arrays.append(p)
    try:
        out, saved = program.forward(O, *arrays)
    except (Fallback, ValueError, TypeError):
        return None  # (a parameter of another shape: the layers say it well)
    if not tracked:
        return out
    if not grad_enabled():
        return Tensor(out, op="Chain")
    backward = program.backward
    return Tensor(out, (x, *params), lambda g: backward(g, saved), "Chain")
