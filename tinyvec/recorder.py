"""The Recorder: per-layer, per-step summaries of the quantities of vector analysis, and
full snapshots of δ^k, O^{k-1} and ΔW^k every N steps.

It reads what every Dense layer already holds after an update (``input``, ``delta``,
``step``), so recording costs a few norms and no copies: a snapshot keeps references to
arrays that the next step replaces rather than overwrites.

Per layer k (1-based, depth order) and step, ``rows`` gets a dict with

- ``o_norm`` ‖O^{k-1}‖, ``delta_norm`` ‖δ^k‖, ``dW_norm`` ‖ΔW^k‖ (Frobenius, whole batch);
- ``cos_dA_delta``: cos(ΔA^k_own, −δ^k) with ΔA^k_own = ΔW^k O^{k-1} + Δb^k, the move of A^k
  due to layer k's own update (science.md §1). It is 1 for one sample and plain descent and
  drops as samples interfere through the Gram matrix Oᵀ O. The full measured ΔA, with the part
  inherited from earlier layers, needs a second forward pass: see `tinyvec.analysis`.
- with δ-rules (`tinyvec.deltarules`), which update layer k with a rewritten δ̃^k:
  ``delta_used_norm`` ‖δ̃^k‖ and ``cos_delta_used`` cos(δ̃^k, δ^k); snapshots add ``delta_used``.

    >>> import numpy as np, tinyvec as tv
    >>> m = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
    >>> x, y = np.ones((2, 1)), np.zeros((1, 1))
    >>> rec = tv.Recorder()
    >>> _ = tv.train(lambda m, x, y: tv.mse(m(x), y), m, [(x, y)], tv.setup(tv.Descent(0.1), m),
    ...              recorder=rec, progress=False)
    >>> round(rec.rows[0]["cos_dA_delta"], 12)
    1.0
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import display
from .backend import is_array, namespace, to_numpy
from .io import atomic_write
from .layers import dense_layers
from .layers.stack import members as count_members
from .layers.stack import take
from .measures import cos, norm


def each_member(rows: list[dict[str, Any]], E: int) -> list[list[dict[str, Any]]]:
    """Rows measured on a stack (a value is an array over the E members, or one value for
    all) → each member's rows, its values as Python numbers like those of a run alone."""
    split = [{k: v.tolist() if is_array(v) else [v] * E for k, v in row.items()} for row in rows]
    return [[{k: v[e] for k, v in row.items()} for row in split] for e in range(E)]


def record_members(recorders: Sequence[Recorder], stack: Any, step: int, losses: Any) -> None:
    """``recorders[e].record(member e of stack, step, losses[e])`` for every member of a stack
    (`tv.stack`), measured on the stack at once: every member's rows and snapshots are those
    its recorder would keep of it alone (`tv.unstack`), without taking the stack apart."""
    E = count_members(stack)
    if E is None:
        raise ValueError(f"record_members takes a stack of models (tv.stack), got {stack!r}")
    if len(recorders) != E or len(losses) != E:
        raise ValueError(
            f"record_members: one recorder and one loss per member of a stack (tv.stack), got "
            f"{len(recorders)} recorders and {len(losses)} losses for {E} members"
        )
    kinds = {(type(r), r.every, getattr(r, "measure_every", 1), getattr(r, "mean_loss", True))
             for r in recorders}  # fmt: skip
    if len(kinds) > 1:
        raise ValueError("record_members: the recorders differ in kind or settings; record "
                         "each member alone (tv.unstack)")  # fmt: skip
    for r in recorders:
        r._check_step(step)
    rows, snapshots = recorders[0]._measure(stack, step, np.asarray(losses, dtype=float), E)
    for e, (r, mine) in enumerate(zip(recorders, each_member(rows, E), strict=True)):
        for row in mine:
            row["loss"] = losses[e]  # as given: the loss of member e's step alone
        r._keep(step, mine, {k: take(a, e) for k, a in snapshots.items()})


class Recorder:
    """Collects summaries at every ``record`` call (``train`` calls it after each update) and,
    when ``every`` is set, snapshots every ``every`` steps, written to ``path`` by `close`.

    A Recorder records one run: `close` (which `train` calls at its end) ends it, and a
    second run with the same Recorder (a second `train`, or steps that start again) is refused
    with a ValueError: its snapshots would overwrite and mix with the first's. Make a new
    Recorder for each run.

    ``path`` is used exactly as given (``path="run"`` writes a file named ``run``, no ``.npz``
    added), and is written atomically: an interrupted run leaves the previous file or a
    complete one, and every step in it has all its layers. If `close` is reached because
    training failed (a `NonFiniteLoss`, Ctrl-C) and the file cannot be written, that training
    error stays the one raised; the write error is added to it as a note and a warning.

    >>> import tinyvec as tv
    >>> tv.Recorder(every=0, path="run.npz")
    Traceback (most recent call last):
    ...
    ValueError: Recorder: every must be a positive number of steps, got 0
    """

    def __init__(
        self, every: int | None = None, path: str | os.PathLike[str] | None = None
    ) -> None:
        if (every is None) != (path is None):
            raise ValueError("Recorder: snapshots need both `every` and `path`")
        if every is not None and (isinstance(every, bool) or not isinstance(every, int)):
            raise ValueError(f"Recorder: every must be a whole number of steps, got {every!r}")
        if every is not None and every < 1:
            raise ValueError(f"Recorder: every must be a positive number of steps, got {every}")
        if path is not None:
            folder = Path(os.path.realpath(path)).parent
            if not folder.is_dir():  # found now, not after training has run
                raise FileNotFoundError(f"Recorder: the folder of {str(path)!r} does not exist")
            if Path(path).is_dir():
                raise IsADirectoryError(f"Recorder: {str(path)!r} is a folder; name a file")
        self.every, self.path = every, path
        self.rows: list[dict[str, Any]] = []
        self.snapshots: dict[str, Any] = {}
        self.notes: list[dict[str, Any]] = []  # whole-model measurements, e.g. the sharpness
        self.closed = False  # `close` was called: the run is over
        self.last_step: int | None = None  # the last step recorded

    @property
    def started(self) -> bool:
        """Whether this Recorder has recorded (or closed) a run already: `train` refuses it."""
        return self.closed or self.last_step is not None

    def record(self, model: Any, step: int, loss: float = math.nan) -> None:
        self._check_step(step)
        self._keep(step, *self._measure(model, step, loss))

    def _check_step(self, step: int) -> None:
        if self.closed:
            raise ValueError(
                "Recorder: this Recorder's run is over (it was closed, by tv.train at its end); "
                "a Recorder records one run: make a new tv.Recorder() for the next"
            )
        if self.last_step is not None and not step > self.last_step:
            raise ValueError(
                f"Recorder: step {step} after step {self.last_step}: the steps of one run "
                "increase (a second run? make a new tv.Recorder() for it)"
            )

    def _measure(
        self, model: Any, step: int, loss: Any, E: int | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A step's rows and snapshots (not kept yet). ``E``: the model is a stack of E
        members; a value is then an array over the members (`record_members`)."""
        stacked = E is not None
        rows: list[dict[str, Any]] = []
        snapshots: dict[str, Any] = {}
        for k, d in enumerate(dense_layers(model), start=1):
            if d.delta is None or "weight" not in d.step:
                continue
            dW, O = d.dW, d.input
            if stacked and O.ndim == 2:  # an input shared by the members: each member's own
                O = namespace(O).broadcast_to(O, (E, *O.shape))
            dA_own = dW @ O
            if "bias" in d.step:
                dA_own = dA_own + d.db[..., None]
            row = {
                "step": step,
                "layer": k,
                "loss": loss,
                "o_norm": norm(O, stacked),
                "delta_norm": norm(d.delta, stacked),
                "dW_norm": norm(dW, stacked),
                "cos_dA_delta": cos(dA_own, -d.delta, stacked),
            }
            arrays = [("input", d.input), ("delta", d.delta), ("dW", dW)]
            used = getattr(d, "delta_used", None)
            if used is not None:
                row["delta_used_norm"] = norm(used, stacked)
                row["cos_delta_used"] = cos(used, d.delta, stacked)
                arrays.append(("delta_used", used))
            rows.append(row)
            if self.every and step % self.every == 0:
                for name, a in arrays:
                    snapshots[f"step{step}/layer{k}/{name}"] = a
        return rows, snapshots

    def _keep(self, step: int, rows: list[dict[str, Any]], snapshots: dict[str, Any]) -> None:
        # a step's rows and snapshots are collected first and kept together, so an
        # interruption (Ctrl-C) mid-step never leaves a step with only some of its layers
        self.rows.extend(rows)
        self.snapshots.update(snapshots)
        self.last_step = step

    def note(self, step: int, **values: Any) -> None:
        """Keep a whole-model measurement of ``step`` (not per layer), such as λ_max and 2/η
        from `tinyvec.analysis.sharpness.SharpnessMonitor`; `noted` reads one as a series.

        >>> rec = Recorder()
        >>> rec.note(10, sharpness=19.5, two_over_lr=20.0); rec.note(20, sharpness=20.3)
        >>> rec.noted("sharpness")
        array([19.5, 20.3])
        """
        self.notes.append({"step": step, **values})

    def noted(self, name: str) -> np.ndarray:
        """One quantity kept by `note`, over the steps that have it."""
        return np.array([n[name] for n in self.notes if name in n])

    def _repr_html_(self) -> str:  # Jupyter: what it holds, each layer's last summaries
        return display.recorder_html(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(display.recorder_text(self))

    def column(self, name: str, layer: int) -> np.ndarray:
        """One summary as a time series for layer k (1-based)."""
        rows = [r for r in self.rows if r["layer"] == layer]
        if self.rows and not rows:
            layers = sorted({r["layer"] for r in self.rows})
            raise ValueError(f"Recorder.column: no layer {layer}; recorded layers: {layers}")
        if rows and name not in rows[0]:
            raise ValueError(f"Recorder.column: no summary {name!r}; have: {', '.join(rows[0])}")
        return np.array([r[name] for r in rows])

    def close(self) -> None:
        """End the run: write the snapshots (if any) to ``path`` as ``.npz``, atomically.
        Closing again does nothing."""
        if self.closed:
            return
        self.closed = True
        if self.path is None or not self.snapshots:
            return
        arrays: dict[str, Any] = {k: to_numpy(v) for k, v in self.snapshots.items()}
        failing = sys.exc_info()[1]  # set when `train` closes us on its way out of an error
        try:
            atomic_write(self.path, lambda f: np.savez(f, **arrays))
        except Exception as e:
            if failing is None:
                raise
            message = f"tv.Recorder could not write {str(self.path)!r}: {e!r}"
            failing.add_note(message)
            warnings.warn(message, UserWarning, stacklevel=2)
