"""`train`'s arguments, checked before any step: each mistake one error that says what to
do, rather than a fault of Python's after the first update. Kept out of loop.py, whose loop a
student reads."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..backend import is_array
from ..layers.checks import is_layer
from .training import OptState


def refuse_bad_arguments(
    data: Any,
    state: Any,
    epochs: Any,
    steps: Any,
    schedule: Any,
    callbacks: Any,
    recorder: Any,
) -> list[Callable[..., Any]]:
    """Refuse what `train` cannot use; return the callbacks as a list (one function given
    alone, or a generator, which a second step would find empty)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train: epochs must be an integer ≥ 1, got {epochs!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"train: steps must be an integer ≥ 1 or None, got {steps!r}")
    if schedule is not None and not callable(schedule):
        raise TypeError(
            f"train: schedule must be a callable step ↦ η such as "
            f"tv.schedules.Exponential(0.1, 0.99), got {schedule!r}"
        )
    if not isinstance(state, OptState):
        raise TypeError(
            f"train takes the optimiser state, got {type(state).__name__}: call "
            "tv.setup(rule, model) first and pass what it returns"
        )
    callbacks = [callbacks] if callable(callbacks) else list(callbacks)  # (a generator, once)
    if not all(callable(cb) for cb in callbacks):
        raise TypeError(
            f"train: callbacks must be functions cb(step, model, loss), got {callbacks!r}"
        )
    if recorder is not None and not callable(getattr(recorder, "record", None)):
        raise TypeError(
            "train: recorder must be a tv.Recorder() (an object with .record(model, step, "
            f"loss)), got {recorder!r}"
        )
    if recorder is not None and getattr(recorder, "started", False):
        raise ValueError(
            "train: this recorder has recorded a run already (a Recorder records one run: its "
            "snapshots would mix both); pass a new tv.Recorder()"
        )
    try:
        iter(data)
    except TypeError:
        raise TypeError(
            f"train: data must be an iterable of batches such as [(x, y)], got {data!r}"
        ) from None
    if isinstance(data, tuple) and data and all(is_array(d) for d in data):
        raise TypeError(
            f"train: data must be an iterable of batches, e.g. [(x, y)] for one batch; got a "
            f"tuple of {len(data)} arrays, which would be read as {len(data)} batches"
        )
    if epochs > 1 and iter(data) is data:
        raise ValueError(
            "train: data is a one-shot iterator (a generator?), which the second epoch would "
            "find empty: pass a list, a re-iterable loader, or epochs=1 with steps="
        )
    return callbacks


def refuse_a_batch_the_loss_cannot_take(
    loss: Callable[..., Any], model: Any, batch: tuple[Any, ...]
) -> None:
    """``loss(model, *batch)`` must be a call the loss can take: [x, y] given as data is two
    batches of one array each, not one batch (x, y)."""
    if is_layer(loss):
        raise TypeError(
            f"train takes (loss, model, data, state), and its loss is a layer, {loss!r}: "
            "were loss and model swapped?"
        )
    try:
        signature = inspect.signature(loss)
    except (TypeError, ValueError):  # (a callable without a signature: its call will say)
        return
    try:
        signature.bind(model, *batch)
    except TypeError as e:
        raise TypeError(
            f"train: the loss cannot take (model, *batch) for a batch of {len(batch)} "
            f"value(s) ({e}); data is an iterable of batches, each a tuple of what the loss "
            "takes after the model: [(x, y)] for one batch, not [x, y]"
        ) from None
