"""The files a study writes: JSON (config.json, summary.json), CSV tables and whole-or-nothing
text files, the same for every study."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import io


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (`tinyvec.io.atomic_write`)."""
    io.atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def finite(value: Any) -> Any:
    """NaN and ±inf → None, recursively through dicts (keys made strings), lists and tuples:
    standard JSON has no NaN.

    >>> finite({"a": [1.0, float("nan")], 2: float("inf")})
    {'a': [1.0, None], '2': None}
    """
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain(o: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and lists (json's ``default``)."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def to_json(value: Any, indent: int | None = None) -> str:
    """``value`` as standard JSON text: NaN and ±inf as null (`finite`), NumPy as plain."""
    return json.dumps(finite(value), indent=indent, default=_plain)


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data (what a sweep keeps in runs.jsonl): `to_json` read back."""
    return json.loads(to_json(value))


def write_json(path: Path, value: Any, indent: int = 1) -> None:
    """Write ``value`` as indented JSON (`to_json`) through a temporary file: a reader never
    sees half."""
    atomic_write(path, to_json(value, indent) + "\n")


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> None:
    """``rows`` as CSV, with the given ``columns`` (default: every key of the first row; keys
    not among them are left out)."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns or rows[0]), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` as a Markdown table, one column per key of the first row.

    >>> print(markdown_table([{"seed": 1, "r2": 0.5}, {"seed": 2, "r2": 0.75}]))
    | seed | r2 |
    |---|---|
    | 1 | 0.5 |
    | 2 | 0.75 |
    <BLANKLINE>
    """
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"
