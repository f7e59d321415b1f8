"""`tv.compile`: one training step of a model, with the work that is the same at every step
done once.

``step = tv.compile(loss, model, state)``; ``step(*batch)`` is ``withgradient`` + ``update``
for ``loss(model, *batch)``, bit for bit, records included. Both already replay what they
can of a model made of Dense, Chain, SkipConnection and Parallel layers: the Chain runs as
its written forward and backward pass (`tinyvec.fast.chain`), and the update as its written
step (`tinyvec.fast.update_program`); so the compiled step is not another computation, only a
shorter road through the same one. It
skips what ``withgradient`` + ``update`` need for being two calls of their own: the gradient
tree (built and read again), a second check of the model's plan, a second hold of Ctrl-C.

Because the loss gets the model itself, with its parameters as Tensors exactly as inside
``withgradient``, any loss works and gives exactly the default step's numbers: a weight
penalty, a closure over the model, several calls, ``no_grad``. The step cannot know what a
loss function will do, so it runs it, graph and all. Give it a loss of tinyvec's own instead,
``tv.compile(tv.mse, model, state)`` (or ``tv.crossentropy``), and the loss is known:
``L = tv.mse(model(x), y)`` on batches ``(x, y)``, and the step runs as plain arrays, the
written forward pass, the loss's own forward and vjp (`tinyvec.engine.losses.parts`: the
functions its graph node runs) and the written backward pass, with no graph at all.

``step.source`` shows the written programs (formulas in comments); ``step.fallback`` says why
the model runs layer by layer instead (a layer `tinyvec.fast.chain` cannot write: the step
is still exact, only slower). With δ-rules the step's update is `tv.update`'s. Inside
``tinyvec.fast.off()`` the step is the reference road's `withgradient` + `update`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import seam
from ..engine.losses import model_loss, parts
from ..engine.tensor import Tensor, grad_enabled
from ..layers.checks import is_layer
from ..layers.containers import Chain
from ..optimise.training import OptState, differentiate, gradients_of, interrupts_deferred, update
from .chain import Fallback, Program, forget, program_for
from .plan import Plan, plan_of
from .update_program import gradient_memory, last_gradients, written

__all__ = ["CompiledStep", "compile_step"]


class CompiledStep:
    """``step(*batch) -> loss``: one training step of ``loss(model, *batch)``, as
    ``withgradient`` + ``update`` computes it (see the module text). ``step.source``: the
    written programs; ``step.fallback``: why the model runs layer by layer (or None)."""

    def __init__(self, loss: Callable[..., Any], model: Any, state: OptState) -> None:
        if not isinstance(state, OptState):
            raise TypeError(
                f"compile takes the optimiser state, got {type(state).__name__}: call "
                "tv.setup(rule, model) first and pass what it returns"
            )
        if not callable(loss) or is_layer(loss):
            what = "a model" if is_layer(loss) else repr(loss)
            raise TypeError(
                f"tv.compile(loss, model, state): loss must be a function loss(model, *batch) "
                f"or a loss of tinyvec's own such as tv.mse, got {what} (the loss comes first)"
            )
        if not is_layer(model):
            raise TypeError(
                f"tv.compile(loss, model, state): model must be a model (a layer, such as "
                f"tv.Chain(...)), got {type(model).__name__}"
            )
        self.loss, self.model, self.state = model_loss(loss), model, state
        self._loss, self._parts = loss, parts(loss)  # a loss of tv's own: its parts (or None)
        self._plan: Plan | None = None
        self._checked: tuple[Any, ...] | None = None  # the kind of (ŷ, y) the loss checked last

    def __repr__(self) -> str:
        how = f"layer by layer: {self.fallback}" if self.fallback else "compiled"
        return f"<tv.compile of {type(self.model).__name__} ({how})>"

    @property
    def fallback(self) -> str | None:
        """Why the model runs layer by layer rather than as its written program, for the last
        kind of input that could not be written (None: none, or no step yet)."""
        if self._plan is None:
            return None
        programs = self._plan.programs
        if not programs:
            return (
                "no written program ran: only a Chain runs as one, called on a features × "
                "batch array"
            )
        return next((p for p in reversed(programs.values()) if isinstance(p, str)), None)

    @property
    def source(self) -> str:
        """The written programs: the model's forward and backward pass for the last kind of
        input, and the update (written at the first step: call the step once first)."""
        kept = self._plan.programs if self._plan is not None else {}
        programs = [p.source for p in kept.values() if isinstance(p, Program)][-1:]
        if programs and self._parts is not None:
            name = self._loss.__name__
            programs.insert(0, _STEP.format(loss=name, L=f"L = {name}(out, y)"))
        update_program = written(self.state, self._plan) if self._plan is not None else None
        if update_program is not None:
            programs.append(update_program.source)
        if not programs:
            return f"# not compiled{': ' + self.fallback if self.fallback else ' yet'}\n"
        return "\n".join(programs)

    def __call__(self, *batch: Any) -> Any:
        return self.run(batch)

    def run(self, batch: tuple[Any, ...], check: Callable[[Any], None] | None = None) -> Any:
        """One step on ``batch``; ``check(loss)`` runs between the forward and backward pass
        (`tv.train` refuses a non-finite loss there). Atomic, as `update`: a Ctrl-C either
        waits for the step (while the loss runs on Tensors, the parameters' stand-ins, and
        while the step is written; a second one goes at once) or comes before anything of it
        is written but the forward pass's records (the step without a graph computes into
        memory of its own, so it need not wait: `tv.train` holds Ctrl-C for the whole step
        anyway)."""
        loss, model, state = self.loss, self.model, self.state
        if seam.road() is None:  # inside tinyvec.fast.off(): the reference road's step
            with interrupts_deferred(second_interrupts=True):
                value, grads = differentiate(lambda m: loss(m, *batch), (model,), check)
                update(state, model, grads)
                return value
        value = self._program_step(batch, check)  # (a loss of tv's own: no graph)
        if value is not NotImplemented:
            return value
        with interrupts_deferred(second_interrupts=True):
            plan = self._plan = plan_of(model, self._plan)
            value, grads = gradients_of(lambda m: loss(m, *batch), [model], plan.trainables, check)
            self._update(plan, grads, False)
            return value

    def _update(self, plan: Plan, grads: Any, trusted: bool) -> None:
        """`update` with ``grads`` in the order of ``plan.trainables``, through the written
        update when it can (``trusted``: the gradients are of the parameters' type, dtype and
        shape)."""
        state = self.state
        program = written(state, plan) if state.transform is None else None
        if program is not None:
            leaves = program.leaves(state.tree)
            # (the gradients a Chain's backward pass wrote into one buffer: stepped as it is)
            G = None if trusted else last_gradients(plan, program.layout, grads)
            if leaves is not None and (
                program.update(grads, leaves, (), trusted)
                if G is None
                else program.update(grads, leaves, (), True, G)
            ):
                return
        # δ-rules, or anything unusual: `update`, which also says what is wrong
        update(state, self.model, plan.tree(grads))

    def _program_step(self, batch: tuple[Any, ...], check: Any) -> Any:
        """The step of ``loss(model(x), y)`` for a loss of tv's own (`parts`), run as plain
        arrays through the model's program: the forward pass, ``L``, ``∂L/∂ŷ`` and the
        backward pass, the very functions the graph nodes run, without the graph; where the
        update is flat, the backward pass writes the gradients straight into the buffer it
        steps. Returns L, or NotImplemented: not this kind of step (the graph's road computes
        it, and says what is wrong)."""
        loss_parts, model = self._parts, self.model
        if loss_parts is None or len(batch) != 2 or type(model) is not Chain:
            return NotImplemented
        if not grad_enabled():
            return NotImplemented
        x, y = batch
        check_loss, loss_forward, loss_vjp = loss_parts  # (`tinyvec.engine.losses.parts`)
        plan = self._plan = plan_of(model, self._plan)
        program = program_for(plan, x) if type(x) is not Tensor else None
        if program is None:
            return NotImplemented
        try:
            out, saved = program.forward(x, *program.params())
        except Fallback:  # a parameter changed shape or dtype: written anew next time
            forget(plan, program)
            return NotImplemented
        except (ValueError, TypeError):  # as the layer-by-layer call would
            return NotImplemented
        # the loss's check once per kind of (ŷ, y): it depends on nothing else
        kind = (type(out), out.dtype, out.shape, type(y), getattr(y, "dtype", None), getattr(y, "shape", None))  # fmt: skip
        if kind != self._checked:
            if not check_loss(out, y):
                return NotImplemented
            self._checked = kind
        L, saved_by_loss = loss_forward(out, y)
        if check is not None:
            check(L)
        # ∂L/∂ŷ, from ∂L/∂L = 1 as a float: it scales as the graph's seed (`seed`: 1 of L's
        # dtype, or E ones for a stack's member losses) does, bit for bit, without making it
        g = loss_vjp(1.0, saved_by_loss)
        # the program's gradients have the parameters' type, dtype and shape when ∂L/∂ŷ has
        # the output's (a float64 target for a float32 model makes float64 ones) and the
        # program says so (`Program.exact_grads`)
        trusted = (
            program.exact_grads
            and type(g) is type(out)
            and g.dtype is out.dtype
            and g.shape == out.shape
        )
        state = self.state
        update_program = written(state, plan) if state.transform is None else None
        layout, backward_into = program.layout, program.backward_into
        if (
            not trusted
            or backward_into is None
            or update_program is None
            or layout is None
            or layout is not update_program.layout  # (`Plan.layout`: one object if equal)
        ):
            self._update(plan, program.backward(g, saved)[1:], trusted)
            return L
        # the gradients straight into the flat buffer the update steps: no concatenation
        G, views = gradient_memory(plan, layout)
        backward_into(g, saved, views)
        leaves = update_program.leaves(state.tree)
        if leaves is None or not update_program.update(views, leaves, (), True, G):
            update(state, model, plan.tree([v.copy() for v in views]))  # (the buffer is ours)
        return L


_STEP = """\
# step(x, y) of tv.compile(tv.{loss}, model, state), no graph:
#     out, saved = forward(x, *params())
#     {L:<35}# the loss's forward, as its graph node runs it
#     g = ∂L/∂out                        # its vjp, from ∂L/∂L = 1
#     grads = backward(g, saved)[1:]     # [∂L/∂W1, ∂L/∂b1, …]
#     update(grads, leaves(state.tree))  # the optimiser's step (without δ-rules)
#     return L
"""


def compile_step(loss: Callable[..., Any], model: Any, state: OptState) -> CompiledStep:
    """``step = tv.compile(loss, model, state)``; then ``step(*batch)`` does what
    ``tv.update(state, model, tv.gradient(lambda m: loss(m, *batch), model))`` does, bit for
    bit, and returns the loss (see the module text).

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

    With a loss of tinyvec's own, ``L = tv.mse(model(x), y)``, the step needs no graph:

    >>> c, d = (tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1)) for _ in "cd")
    >>> written = tv.compile(tv.mse, c, tv.setup(tv.Descent(0.1), c))
    >>> traced = tv.compile(loss, d, tv.setup(tv.Descent(0.1), d))
    >>> all(written(x, y) == traced(x, y) for _ in range(3)), bool((c[0].weight == d[0].weight).all())
    (True, True)
    """
    return CompiledStep(loss, model, state)
