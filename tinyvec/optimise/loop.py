"""The training loop: Flux's ``train!``, streaming its data, optionally compiled."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sized
from typing import Any

from tqdm.auto import tqdm

from .. import seam
from ..engine.losses import model_loss
from .adjust import adjust
from .arguments import refuse_a_batch_the_loss_cannot_take, refuse_bad_arguments
from .training import NonFiniteLoss, OptState, differentiate, interrupts_deferred, update

__all__ = ["train"]


def train(
    loss: Callable[..., Any],
    model: Any,
    data: Iterable[Any],
    state: OptState,
    *,
    epochs: int = 1,
    steps: int | None = None,
    progress: bool = True,
    recorder: Any = None,
    callbacks: Iterable[Callable[..., Any]] | Callable[..., Any] = (),
    schedule: Callable[[int], float] | None = None,
    compile: bool = False,  # noqa: A002, RUF100 - the name of tv.compile, which it turns on
) -> list[float]:
    """Flux's ``train!``: for each batch ``d`` in ``data`` (``epochs`` times), take the
    gradient of ``loss(model, *d)`` (``d`` a tuple such as ``(x, y)``, or one array) and
    `update` (with ``compile=True``, through `tv.compile`: the same numbers). A loss
    of tinyvec's own, such as ``tv.mse``, given as ``loss`` means ``tv.mse(model(x), y)``.
    ``data`` is read as it goes (a generator or a streaming loader works, and
    ``steps`` bounds an endless one); ``steps`` stops after that many updates in all.

    A NaN or infinite loss raises `NonFiniteLoss` before the update, a non-finite step
    `NonFiniteStep`, leaving model and state as they were. ``recorder.record(model, step,
    loss)`` and each ``callback(step, model, loss)`` run after every update; a callback
    returning True stops training. A Ctrl-C takes effect between two steps (a second Ctrl-C
    at once). Returns the loss of every step.

    ``schedule``: a learning-rate schedule, any callable t ↦ η_t such as
    ``tv.schedules.Cosine(0.1, steps=1000)``: before step t (t = 0, 1, … counts the updates
    of this call) η is set to η_t in every rule of ``state`` (`tv.adjust`), so the δ-rules'
    α follows. To continue a schedule in a second call, shift it: ``lambda t: s(t + done)``.

    >>> import numpy as np, tinyvec as tv
    >>> model = tv.Dense(1, 1, rng=0)
    >>> batches = ((np.ones((1, 4)), np.zeros((1, 4))) for _ in iter(int, 1))  # endless
    >>> state = tv.setup(tv.Descent(0.1), model)
    >>> len(tv.train(lambda m, x, y: tv.mse(m(x), y), model, batches, state, steps=3, progress=False))
    3
    >>> len(tv.train(tv.mse, model, batches, state, steps=2, progress=False, compile=True))
    2
    >>> _ = tv.train(tv.mse, model, batches, state, steps=3, progress=False,
    ...              schedule=tv.schedules.Exponential(0.1, decay=0.5))
    >>> state.rule  # η after the last step, t = 2: 0.1 · 0.5²
    Descent(0.025)
    """
    callbacks = refuse_bad_arguments(data, state, epochs, steps, schedule, callbacks, recorder)
    total = len(data) * epochs if isinstance(data, Sized) else None
    if steps is not None:
        total = steps if total is None else min(total, steps)
    history: list[float] = []
    epoch = step = 0

    def check(value: Any) -> None:  # between forward and backward: nothing has changed yet
        if not all(math.isfinite(v) for v in _numbers(value)):
            raise NonFiniteLoss(
                f"loss is {_number(value)} at epoch {epoch}, step {step}: stopped before the "
                "update; the model and the optimiser state are unchanged"
            )

    fast = seam.road() if compile else None
    compiled = fast.compile(loss, model, state) if fast is not None else None
    loss = model_loss(loss)  # tv.mse and the like: loss(model(x), y)
    bar = tqdm(total=total, disable=not progress, desc="train", leave=False)
    try:
        for epoch in range(epochs):  # noqa: B007 - `check` reads it
            for batch in data:
                args = batch if isinstance(batch, tuple) else (batch,)
                if step == 0:  # (a batch the loss cannot take: one error, before any step)
                    refuse_a_batch_the_loss_cannot_take(loss, model, args)
                # a Ctrl-C stops training between two steps (a second one at once): while
                # the gradient runs, parameters hold Tensors, and the update writes many arrays
                with interrupts_deferred(second_interrupts=True):
                    if schedule is not None:  # η_t for the update about to be taken
                        adjust(state, eta=schedule(step))
                    if compiled is not None:
                        value = compiled.run(args, check)
                    else:
                        value, grads = differentiate(lambda m: loss(m, *args), (model,), check)
                        update(state, model, grads)
                history.append(_number(value))
                step += 1
                if recorder is not None:
                    recorder.record(model, step, history[-1])
                stop = [cb(step, model, history[-1]) for cb in callbacks]
                bar.update()
                bar.set_postfix(loss=f"{max(_numbers(history[-1])):.4g}", refresh=False)
                if any(s is True for s in stop) or (steps is not None and step >= steps):
                    return history
    finally:
        bar.close()
        if recorder is not None and hasattr(recorder, "close"):
            recorder.close()
    return history


def _numbers(value: Any) -> list[float]:
    """The loss as a list of numbers: one, or a stack's E member losses."""
    if isinstance(value, tuple) or getattr(value, "ndim", 0) != 0:
        return [float(v) for v in value]
    return [float(value)]


def _number(value: Any) -> Any:
    """What `train`'s history keeps of a step's loss: a float, or for a stack of E models
    (`tv.stack`) a tuple of the E member losses."""
    numbers = _numbers(value)
    return numbers[0] if getattr(value, "ndim", 0) == 0 else tuple(numbers)
