"""`tv.compile`: one training step planned once and replayed as straight-line Python.

The default step (`withgradient` + `update`) is general: every call wraps each parameter in
a Tensor, runs the loss as a graph (a Chain of known layers is already one node there, its
written program: `tinyvec.layers.fused`), builds the gradient tree and reads it again in
`update`. For a model made of Dense, Chain, SkipConnection and Parallel layers the compiled
step keeps only what cannot be known in advance. It runs the same written program (forward
and backward pass as plain Python over arrays, formulas in comments: ``step.source``) on the
parameter arrays themselves. The loss is still yours and still differentiated by the engine:
inside the compiled step the loss receives a stand-in for the model whose call runs the
written forward pass and returns a Tensor without a graph; the gradient that reaches it is
fed to the written backward pass, and its parameter gradients straight to `update`'s written
plain step (`tinyvec.optimise.update_program`, also in ``step.source``). With δ-rules the
update is `tv.update`'s own code (`take_step`).

It is bit-identical to ``withgradient`` + ``update``: the same array operations in the same
order (each array is summed from at most two contributions, and a + b is b + a exactly), and
every record is kept: each Dense layer's input, preact, output, delta, delta_used and step
(dW, db), and the containers' input, so the `Recorder` and the δ-rules work unchanged.

When it cannot compile, it says why in ``step.fallback`` and runs the default step instead
(same results, default speed): a layer it does not know (a custom layer, a shared layer, a
connection other than +/vcat, a value used by more than two layers), or a loss that reads the
model other than by calling it once (its parameters through a closure included: they are
Tensors while the loss runs, as in the default step, so such a use shows as a gradient). It writes a new program when the model's structure
changes (`Plan.valid`), when the input's features, dtype or array type or a parameter's dtype
change, and when the optimiser state's tree or δ-rules are replaced; an input it cannot take
(wrong shape) goes to the default step, which raises the usual error.

You can skip this module when reading the engine: it is an optimisation of `tv.update`'s
caller, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine.plan import Plan, plan_of
from ..engine.tensor import Tensor
from ..layers.fused import Fallback as _Fallback
from ..layers.fused import Program, write_program
from .training import (
    Leaf,
    OptState,
    PendingStep,
    _withgradient,
    _written,
    interrupts_deferred,
    set_all,
    take_step,
    track,
    update,
)

__all__ = ["CompiledStep", "compile_step"]


class _ModelCall:
    """What the loss receives as the model in a compiled step: calling it runs the compiled
    forward pass (once, on the parameter arrays ``arrays``); reading anything else from it
    means the loss needs the real model."""

    __slots__ = ("arrays", "out", "plan", "program", "saved", "step")

    def __init__(self, step: CompiledStep, plan: Plan, arrays: list[Any]) -> None:
        self.step, self.plan, self.arrays = step, plan, arrays
        self.program: Program | None = None
        self.out: Tensor | None = None
        self.saved: Any = None

    def __call__(self, x: Any) -> Tensor:
        if self.out is not None:
            raise _Fallback("the loss calls the model more than once")
        self.program = program = self.step._prepare(x, self.plan)
        out, self.saved = program.forward(x, *self.arrays)
        self.out = Tensor(out)
        return self.out

    def __getattr__(self, name: str) -> Any:
        raise _Fallback(f"the loss reads model.{name} (not only the model's output)")

    # Python looks these up on the type, not through __getattr__
    def __getitem__(self, index: Any) -> Any:
        raise _Fallback(f"the loss reads model[{index!r}] (not only the model's output)")

    def __len__(self) -> int:
        raise _Fallback("the loss reads len(model) (not only the model's output)")

    def __iter__(self) -> Any:
        raise _Fallback("the loss iterates over the model (not only its output)")


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
        self._program: Program | None = None
        self._plain = False  # no δ-rules: the update is `tv.update`'s written one
        self._key: tuple[Any, ...] = ()
        self._slots: list[tuple[str, Any, str, Leaf]] = []
        self._leaves: list[Leaf] = []

    def __repr__(self) -> str:
        how = f"default step: {self.fallback}" if self.fallback else "compiled"
        return f"<tv.compile of {type(self.model).__name__} ({how})>"

    @property
    def source(self) -> str:
        """The generated program (compiled at the first step, so call the step once first)."""
        if self._program is None:
            return f"# not compiled{': ' + self.fallback if self.fallback else ' yet'}\n"
        written = self.state.written if self._plain else None
        update = "" if written is None or written[2] is None else "\n" + written[2].source
        return self._program.source + update

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

    def _prepare(self, x: Any, plan: Plan) -> Program:
        """The program for this model (``plan``), state and kind of input: kept, or written
        now."""
        state = self.state
        key = (plan, state.tree, state.transform, type(x), getattr(x, "dtype", None))
        program = self._program
        if program is None or key != self._key:
            if not hasattr(x, "shape") or getattr(x, "ndim", 0) != 2:
                raise _Fallback("the model's input is not a features × batch array", False)
            slots = plan.zip((state.tree,), ("optimiser state",))
            program = write_program(plan, x)
            if program.paths != [path for path, *_ in slots]:
                raise _Fallback("some parameters are outside the layers tv.compile knows")
            # the δ-rules rewrite the step layer by layer: their update stays `take_step`'s
            plain = state.transform is None and all(type(s[3]) is Leaf for s in slots)
            self._plain = plain
            self._slots, self._leaves = slots, [s[3] for s in slots]
            self._plan, self._program, self._key = plan, program, key
        return program

    def _compiled(self, batch: tuple[Any, ...], check: Callable[[Any], None] | None) -> Any:
        plan = plan_of(self.model, self._plan)
        # While the loss runs, the parameters are Tensors, as in the default step: a loss that
        # reads them other than through its model argument (a closure over the model, for a
        # weight penalty) gives them a gradient of their own, which the written program would
        # miss. Such a loss is refused below, and the default step adds that gradient.
        tracked: list[tuple[Any, str, Any]] = []
        try:
            tensors = track(plan, tracked)
            call = _ModelCall(self, plan, [value for _, _, value in tracked])
            loss = self.loss(call, *batch)
            program = call.program
            if type(loss) is not Tensor or loss.ndim != 0 or call.out is None or program is None:
                # the default step gives the error (or handles a loss that ignores the model)
                raise _Fallback("the loss is not a scalar Tensor of the model's output", False)
            if check is not None:
                check(loss.data)
            loss.backward()
        finally:
            set_all(tracked)
        if any(t.grad is not None for t in tensors):
            raise _Fallback(
                "the loss reads the model's parameters other than through its model argument "
                "(a closure over the model?)"
            )
        g = call.out.grad
        if g is None:
            grads = (None,) * len(self._slots)
        else:
            grads = program.backward(g, call.saved)[1:]  # (not ∂L/∂input: not asked for)
        # (Ctrl-C is held by `run` for the whole step, the update included)
        # `tv.update`'s written program, made (once) now that the parameters are arrays again
        update = _written(self.state, plan) if self._plain else None
        if update is not None and g is not None and update.update(grads, self._leaves):
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
    def forward(v0, W1, b1, W2, b2):
    """
    return CompiledStep(loss, model, state)
