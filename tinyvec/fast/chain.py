"""A Chain of Dense, SkipConnection and Parallel layers as one straight-line program.

Calling a Chain layer by layer makes a graph node per layer and checks every input on the
way; for a model built from the layers below, all of that is the same at every call. So the
first call writes the model's forward and backward pass once, as plain Python over arrays,
and later calls replay it: the Chain becomes
*one* graph node whose vjp is the written backward pass (`chain_call`). `tv.compile` uses the
same program for its training step. ``Plan.programs`` keeps the programs of a model, so a new
structure writes new ones.

What it writes: the array operations of Dense's formulas (`tinyvec.layers.dense`: `affine`,
`backprop_delta`, `dense_vjp`), the same NumPy calls in the same order, and, for σ and
g ⊙ σ′, a call of the activation's own ``f`` and ``backprop``: an activation's formulas are
never written again here (an activation given by ``backprop`` alone, or by ``derivative``
alone, runs exactly as in the layer). The suite in ``tests/fast`` proves the equality.

Nothing changes in what you can see: every Dense layer records its input, preact and output
in the forward pass and its delta in the backward pass, the containers their input, and the
numbers are the same bit for bit as layer by layer (the same functions on the same arrays in
the same order; a value receives at most two cotangents, and a + b is b + a exactly). What
differs is the graph: a Chain's output has one node, ``op == "Chain"``, with the input and
every parameter as its parents. Inside ``with tinyvec.fast.off():`` Chains run layer by
layer, one node per layer (the reference road).

A stack of E models (`tv.stack`) is written alike: the same formulas on (E, features, batch)
values (batched products), its input (E, in, B) or (in, B) shared by the members.

A model it cannot write (a custom layer, a shared layer, a connection other than + and vcat,
a value used by more than two layers, parameters of another dtype than the input) simply
runs layer by layer; so does any call it is not sure of (an input of another kind or shape,
a parameter of another shape, a δ-rule's sweep, which replaces Dense's forward pass; for a
stack, ∂L/∂x of a shared input, and vcat).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from ..backend import namespace
from ..engine.activations import ACTIVATIONS, identity
from ..engine.ops import vcat
from ..engine.tensor import Tensor, data, grad_enabled
from ..layers.containers import Chain, Parallel, SkipConnection, add
from ..layers.dense import Dense, overridden
from ..layers.stack import stack_members
from .plan import Plan, plan_of
from .update_program import FLAT, gradient_memory

__all__ = [
    "Fallback",
    "Program",
    "chain_call",
    "flat_backward",
    "forget",
    "program_for",
    "write_program",
]


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
      reached, and every activation's derivative is a built-in formula, not a function);
    - ``layout``: with ``backward_into``, its gradients' buffer, laid out as the written
      update's θ: (dtype, shapes, ``()``, or a stack's ``(E,)``) (`flat_backward`); None
      otherwise.
    """

    __slots__ = (
        "backward",
        "backward_into",
        "exact_grads",
        "forward",
        "layout",
        "params",
        "paths",
        "scope",
        "source",
    )

    def __init__(
        self, source: str, scope: dict[str, Any], paths: list[str], exact_grads: bool = False
    ) -> None:
        self.source, self.scope, self.paths = source, scope, paths
        self.exact_grads = exact_grads
        exec(compile(source, "<tinyvec program>", "exec"), scope)  # our own generated code
        self.params: Callable[[], list[Any]] = scope["params"]
        self.forward: Callable[..., tuple[Any, Any]] = scope["forward"]
        self.backward: Callable[[Any, Any], tuple[Any, ...]] = scope["backward"]
        # NumPy, every parameter reached: the backward pass into a flat gradient buffer
        self.backward_into: Callable[[Any, Any, list[Any]], Any] | None = scope.get("backward_into")
        # with `backward_into`: the gradient buffer's (dtype, shapes, () or a stack's (E,)),
        # whose views its backward pass writes (`flat_backward`)
        self.layout: tuple[Any, list[tuple[int, ...]], tuple[int, ...]] | None = None


# --- code generation ------------------------------------------------------------------------
def _connection(f: Any) -> str | None:
    return "+" if f is add else "vcat" if f is vcat else None


class _Writer:
    """Writes the program from the plan: values v0 (the input), v1, …; one block of forward
    lines per op, and the op kept for the backward pass, written afterwards in reverse."""

    def __init__(self, plan: Plan, x: Any, input_grad: bool) -> None:
        self.plan, self.x = plan, x
        self.scope: dict[str, Any] = {"Fallback": Fallback}
        self.forward: list[str] = []
        self.ops: list[tuple[Any, ...]] = []
        # a stack of E models (`tv.stack`): every value (E, features, batch) but the input,
        # which may be (features, batch), shared by the members
        self.members = stack_members(plan.trainables)
        if x.ndim == 3 and (self.members is None or x.shape[0] != self.members):
            raise Fallback(f"an input of shape {x.shape} (the layers say what is wrong)")
        if self.members is not None and x.ndim == 2 and input_grad:
            raise Fallback("∂L/∂x of an input shared by a stack's members: layer by layer")
        self.rows = {"v0": x.shape[-2]}  # features of each value
        self.tracked = {"v0": input_grad}  # whether a value needs its cotangent
        self.uses = {"v0": 0}
        self.args: list[str] = []  # the forward pass's parameter arguments: W1, b1, …
        self.shapes: list[str] = []  # their shapes, checked at every call
        self.first_param: dict[int, int] = {}  # Dense layer k → the position of W^k in args
        self.entries: dict[int, int] = {}  # Dense layer k → the entries of W^k (of a member)
        self.paths: list[str] = []
        self.reads: list[str] = []  # what `params()` reads: dense1.weight, …
        self.saved: list[str] = []  # what the backward pass needs from the forward pass
        self.dense = 0
        self.count = 0
        self.dtype = x.dtype
        self.numpy = type(x) is np.ndarray
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

    def run(self, index: int, v: str) -> str:
        """`layer` of node ``index`` on value ``v`` with everything inside it, without recursion:
        `layer` yields (child node, its input value) and is sent the child's output value, so
        the stack of these generators is the walk (a model of any depth is written)."""
        stack = [self.layer(index, v)]
        sent: Any = None  # (a generator's first send is None)
        while True:
            try:
                child, value = stack[-1].send(sent)
            except StopIteration as done:
                stack.pop()
                if not stack:
                    return str(done.value)
                sent = done.value
                continue
            stack.append(self.layer(child, value))
            sent = None

    def layer(self, index: int, v: str) -> Generator[tuple[int, str], str, str]:
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
                v = yield k, v
            return v
        if kind is SkipConnection:
            self.record(node, v)
            ((_, kids, _),) = node.slots
            y = yield kids[0], v
            return self.connect(node, layer.connection, [y, v])
        if kind is Parallel:
            self.record(node, v)
            kids = node.slots[0][1] if node.slots else []
            ys = []
            for k in kids:
                ys.append((yield k, v))
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
        if symbol == "vcat" and self.members is not None:
            raise Fallback(f"{node.path}: vcat of a stack's values is not written")
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
        if self.rows[v] != W.shape[-1]:
            raise Fallback(f"{node.path} expects {W.shape[-1]} features, gets {self.rows[v]}")
        self.use(v)
        self.dense += 1
        k = self.dense
        L = self.const(f"dense{k}", layer)
        sigma = layer.sigma
        if sigma is not ACTIVATIONS.get(sigma.name):
            self.exact_grads = False  # (a derivative of your own may change dtype or shape)
        # σ and g ⊙ σ′ are the activation's own functions, called (never rewritten here)
        f = self.const(f"sigma{k}", sigma.f)
        bp = None if sigma is identity else self.const(f"backprop{k}", sigma.backprop)
        out = self.value(W.shape[-2], True)
        self.first_param[k] = len(self.args)
        self.entries[k] = W.shape[-2] * W.shape[-1]
        self.args.append(f"W{k}")
        self.shapes.append(f"W{k}.shape != {tuple(W.shape)}")
        self.reads.append(f"{L}.weight")
        lines = [
            f"    # {node.path}: {layer!r}",
            f"    A{k} = W{k} @ {v}  # A^{k} = W^{k} O^{k - 1} + b^{k}  (dense.affine)",
        ]
        if b is not None:
            self.args.append(f"b{k}")
            self.shapes.append(f"b{k}.shape != {tuple(b.shape)}")
            self.reads.append(f"{L}.bias")
            lines.append(f"    A{k} += b{k}[..., None]  # (in place: A is new, and of b's dtype)")
        self.forward += [
            *lines,
            f"    {out} = {f}(A{k})  # O^{k} = σ(A^{k}), σ = {sigma!r}",
            f"    {L}.input, {L}.preact, {L}.output = {v}, A{k}, {out}",
        ]
        self.paths += [f"{node.path}.{name}" for name in node.present]
        self.saved += [v, f"W{k}", f"A{k}", out]
        self.ops.append(("dense", k, L, bp, v, out, b is not None))
        return out

    def write(self) -> tuple[list[str], dict[str, Any], list[str]]:
        """(the program's lines, the names they use, the parameters' paths in order)."""
        self.scope["xp"] = namespace(self.x)
        self.scope["add_reduce"] = np.add.reduce  # (NumPy's sum without its Python wrapper)
        self.scope["matmul"], self.scope["multiply"], self.scope["add"] = (
            np.matmul,
            np.multiply,
            np.add,
        )
        self.scope["ARRAY"], self.scope["DT"], self.scope["IN"] = (
            type(self.x),
            self.x.dtype,
            self.x.shape[:-1],  # (a stack's: (E, features), or (features,) shared)
        )
        out = self.run(0, "v0")
        if not self.tracked[out]:
            raise Fallback("the model's output does not depend on any parameter")
        args = ", ".join(self.args)
        # (`is not` first: NumPy's dtypes are singletons, except those of unpickled arrays)
        dtypes = " or ".join(f"({a}.dtype is not DT and {a}.dtype != DT)" for a in self.args)
        shapes = " or ".join(self.shapes)
        params = [
            "def params():",
            '    """The parameters, in the order of the forward pass\'s arguments."""',
            f"    return [{', '.join(self.reads)}]",
        ]
        head = [
            f"def forward(v0, {args}):",
            '    """The model on input v0 (features × batch): every value, every record."""',
            f"    if type(v0) is not ARRAY or v0.ndim != {self.x.ndim} or v0.shape[:-1] != IN or (",
            "            v0.dtype is not DT and v0.dtype != DT):",
            "        raise Fallback('another kind of input')",
            f"    if {dtypes}:",
            "        raise Fallback('a parameter changed dtype')",
            f"    if {shapes}:",
            "        raise Fallback('a parameter changed shape')",
        ]
        saved = list(dict.fromkeys(self.saved))
        forward = head + self.forward + [f"    return {out}, ({', '.join(saved)},)", ""]
        backward = self.backward(out, saved)
        if self.numpy and self.exact_grads:  # (every parameter reached: each G[i] written)
            backward += ["", *self.backward(out, saved, into=True)]
        return forward + backward + [""] + params, self.scope, self.paths

    def backward(self, out: str, saved: list[str], into: bool = False) -> list[str]:
        """The backward pass, in reverse over the ops. ``into`` (NumPy only): written as
        ``backward_into(g, saved, G)``, which puts each parameter's gradient into G[i], views
        of one flat buffer that the written update steps as it is (`tv.compile`), and returns
        ∂L/∂v0 only: the same products and sums, written into memory that is reused."""
        if into:
            lines = [
                f"def backward_into(g_{out}, saved, G):",
                '    """`backward`, each parameter\'s gradient written into G[i] (views of one',
                '    flat buffer, in the order of the parameters); returns ∂L/∂v0."""',
            ]
        else:
            lines = [
                f"def backward(g_{out}, saved):",
                '    """∂L/∂(model output) → [∂L/∂v0, ∂L/∂(each parameter)], recording δ^k."""',
            ]
        lines.append(f"    {', '.join(saved)}, = saved")
        if into:  # at batch 1, δ Oᵀ is a column times a row: NumPy's matmul runs it as a
            # loop without BLAS, each entry 0 + δ_i O_j, which the product and + 0 give
            # exactly in two thirds of the time (the product made whole, then added into
            # G: a view of a stack's buffer, into which NumPy writes a product slowly)
            lines.append(f"    column = g_{out}.shape[-1] == 1")
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
                lines.append(f"    # {L}: layer {k}  (dense.backprop_delta, dense.dense_vjp)")
                if bp is None:
                    lines.append(f"    {d} = g_{res}  # δ^{k} = ∂L/∂O^{k} (σ = identity)")
                else:
                    lines.append(
                        f"    {d} = {bp}(g_{res}, A{k}, {res})  # δ^{k} = ∂L/∂O^{k} ⊙ σ′(A^{k})"
                    )
                lines.append(f"    {L}.delta, {L}.delta_used = {d}, None")
                give(v, f"W{k}.mT @ {d}  # ∂L/∂O^{k - 1} = W^{k}ᵀ δ^{k}")
                i = self.first_param[k]  # (the position of W^k among the parameters)
                dW = f"∂L/∂W^{k} = δ^{k} O^{k - 1}ᵀ"
                if into and self.entries[k] > 1:
                    lines += [
                        "    if column:  # (as NumPy's matmul sums, 0 + δ_i O_j: −0 becomes +0)",
                        f"        add(0.0, multiply({d}, {v}.mT), out=G[{i}])  # {dW}",
                        "    else:",
                        f"        matmul({d}, {v}.mT, out=G[{i}])  # {dW}",
                    ]
                elif into:
                    lines.append(f"    matmul({d}, {v}.mT, out=G[{i}])  # {dW}")
                else:
                    lines.append(f"    gW{k} = {d} @ {v}.mT  # ∂L/∂W^{k} = δ^{k} O^{k - 1}ᵀ")
                if bias and into:
                    lines.append(
                        f"    add_reduce({d}, -1, out=G[{i + 1}])  # ∂L/∂b^{k} = Σ_batch δ^{k}"
                    )
                elif bias:
                    total = "add_reduce" if self.numpy else "xp.sum"
                    axis = "-1" if self.numpy else "axis=-1"
                    lines.append(f"    gb{k} = {total}({d}, {axis})  # ∂L/∂b^{k} = Σ_batch δ^{k}")
        order = [g for k in sorted(grads) for g in grads[k]]
        first = "g_v0" if self.tracked["v0"] and "v0" in has else "None"
        lines.append(f"    return {first}" if into else f"    return {first}, {', '.join(order)}")
        return lines


def write_program(plan: Plan, x: Any, input_grad: bool = False) -> Program:
    """The program of ``plan``'s model for inputs like ``x`` (``input_grad``: its backward
    pass also gives ∂L/∂x); raises `Fallback` when it cannot be written."""
    writer = _Writer(plan, x, input_grad)
    lines, scope, paths = writer.write()
    program = Program("\n".join(lines) + "\n", scope, paths, writer.exact_grads)
    shapes = [tuple(data(p).shape) for p in program.params()]
    # (one model's buffer is kept by its plan: only for a model small enough for a flat update)
    small = sum(math.prod(shape) for shape in shapes) <= FLAT
    if program.backward_into is not None and (writer.members is not None or small):
        program.layout = plan.layout(
            x.dtype, shapes, () if writer.members is None else (writer.members,)
        )
    return program


# --- the call -------------------------------------------------------------------------------
def program_for(plan: Plan, O: Any, tensor_in: bool = False) -> Program | None:
    """The program of ``plan``'s Chain for input array ``O`` (written at the first call of its
    kind), or None: the Chain runs layer by layer (an input that is not features × batch, a
    model it cannot write; see the module text)."""
    if getattr(O, "ndim", None) not in (2, 3):  # (3: a stack's, E × features × batch)
        return None
    key = (type(O), O.dtype, O.shape[:-1], tensor_in)
    program = plan.programs.get(key)
    if program is None:
        try:
            program = write_program(plan, O, tensor_in)
        except Fallback as why:
            program = why.reason  # remembered: this kind of input runs layer by layer
        plan.programs[key] = program
    return program if isinstance(program, Program) else None


def forget(plan: Plan, program: Program) -> None:
    """Drop ``program`` from ``plan``: its parameters changed shape or dtype since it was
    written (an array replaced by a wider one), so the next call writes it again."""
    for key in [k for k, p in plan.programs.items() if p is program]:
        del plan.programs[key]


def chain_call(chain: Any, x: Any) -> Any:
    """``chain(x)`` through its program, as one graph node; NotImplemented when it must run
    layer by layer (see the module text)."""
    if overridden():  # a δ-rule's sweep runs Dense layers its own way
        return NotImplemented
    tensor_in = type(x) is Tensor
    O = x.data if tensor_in else x
    plan = plan_of(chain)
    program = program_for(plan, O, tensor_in)
    if program is None:
        return NotImplemented
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
    except Fallback:  # a parameter of another shape or dtype: write the program anew next time
        forget(plan, program)
        return NotImplemented
    except (ValueError, TypeError):
        return NotImplemented  # (the layers say what is wrong, and say it well)
    if not tracked:
        return out
    if not grad_enabled():
        return Tensor(out, op="Chain")
    if program.layout is not None:  # the gradients into one buffer, which the update steps
        shape = out.shape
        vjp = lambda g: flat_backward(plan, program, g, saved, shape)  # noqa: E731
        return Tensor(out, (x, *params), vjp, "Chain")
    backward = program.backward
    return Tensor(out, (x, *params), lambda g: backward(g, saved), "Chain")


def flat_backward(
    plan: Plan, program: Program, g: Any, saved: Any, shape: tuple[int, ...]
) -> tuple[Any, ...]:
    """The backward pass of a model's program (or a stack's) with every gradient written into
    a view of one buffer laid out as the written update's θ (`backward_into`; a stack's:
    (E, P), each member's gradients one row), memory the plan reuses
    while no one else holds it (`tinyvec.fast.update_program.gradient_memory`): the update
    then steps the buffer as it is, where it would concatenate the gradients (`last_gradients`
    tells). A ∂L/∂(output) of another dtype or shape than the output's: the plain backward
    pass."""
    layout, into = program.layout, program.backward_into
    if (
        layout is None
        or into is None
        or type(g) is not np.ndarray
        or g.dtype != layout[0]
        or g.shape != shape
    ):
        return program.backward(g, saved)
    _, views = gradient_memory(plan, layout)
    return (into(g, saved, views), *views)
