"""The types of the studies' flags (`argparse` ``type=``): each turns the text of a flag
into its value, or refuses a bad one with an ``ArgumentTypeError`` that says what to give
(`tinyvec.experiments.common.StudyParser` prints it as one line); and `seeds_name`, how a
list of seeds is written back (in config.json and folder names).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any


def _number(text: str, kind: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Any:
    """``kind(text)`` when the text is such a number and ``ok`` holds for it; else an
    ArgumentTypeError: "must be ``what``"."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):  # (NaN fails every comparison: refused)
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer ≥ 1 (``--epochs``, ``--rounds``, ``--points``).

    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be an integer ≥ 1, got '0'
    """
    return _number(text, int, lambda v: v >= 1, "an integer ≥ 1")


def nonnegative_int(text: str) -> int:
    """An integer ≥ 0."""
    return _number(text, int, lambda v: v >= 0, "an integer ≥ 0")


def positive_float(text: str) -> float:
    """A finite number > 0 (step sizes, ε)."""
    return _number(text, float, lambda v: 0 < v < math.inf, "a finite number > 0")


def nonnegative_float(text: str) -> float:
    """A finite number ≥ 0 (κ, weight decay)."""
    return _number(text, float, lambda v: 0 <= v < math.inf, "a finite number ≥ 0")


def seed_list(text: str) -> list[int]:
    """``--seeds``: a range ``0-4`` or a list ``1,4,9``. A lone number is refused: ``3`` could
    mean three seeds or seed 3.

    >>> seed_list("0-2"), seed_list("1,4,9"), seed_list("2-3,7")
    ([0, 1, 2], [1, 4, 9], [2, 3, 7])
    """
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            a, dash, b = part.strip().partition("-")
            seeds.extend(range(int(a), int(b) + 1) if dash else [int(a)])
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(
            f"takes distinct seeds ≥ 0 as a range 0-4 or a list 1,4,9, got {text!r}"
        )
    if "," not in str(text) and "-" not in str(text):
        n = seeds[0]
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous: write 0-{max(n - 1, 0)} for {n} seeds, or use "
            f"--seed {n} for seed {n} alone"
        )
    return seeds


def dask_address(text: str) -> str:
    """``--dask``: a scheduler address ``tcp://HOST:PORT`` (what ``dask scheduler`` prints).

    >>> dask_address("tcp://10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    """
    scheme, sep, rest = text.partition("://")
    host, colon, port = (rest if sep else text).rpartition(":")
    if not (colon and host and port.isdigit()) or (
        sep and scheme not in ("tcp", "tls", "ws", "wss")
    ):
        raise argparse.ArgumentTypeError(
            f"takes a scheduler address such as tcp://HOST:8786, got {text!r}"
        )
    return text


def seeds_name(seeds: Sequence[int]) -> str:
    """How a folder names a list of seeds: ``0-4`` for a range, ``1,4,9`` otherwise.

    >>> seeds_name([0, 1, 2]), seeds_name([1, 4, 9])
    ('0-2', '1,4,9')
    """
    s = list(seeds)
    if len(s) > 1 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))
