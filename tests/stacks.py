"""A spy on a study's stacks, shared by the studies' tests (on the path as ``tests/nets.py``)."""

from collections.abc import Callable
from typing import Any


def spy_on_stacks(
    monkeypatch: Any,
    fn: Any,
    what: Callable[[list[dict]], Any] = lambda specs: [s["seed"] for s in specs],
) -> list[Any]:
    """``what(specs)`` (the seeds, by default) of every stack the sweep hands to the sweep
    function ``fn`` (``fn.stacked``, `tinyvec.experiments.sweep.stackable`), which still runs
    each stack as it would."""
    calls: list[Any] = []
    stacked = fn.stacked

    def spy(specs):
        calls.append(what(specs))
        return stacked(specs)

    monkeypatch.setattr(fn, "stacked", spy)
    return calls
