"""Rich display in Jupyter and IPython: a model, a gradient or state Tree, a Recorder.

A model shows its Flux-style printing (``print(model)``: the tree, a parameter count per leaf
layer, the total), then one flag per parameter array that holds NaN or ±inf, named by its path
(``model.layers[1].layer.weight``). A Tree (a gradient, an optimiser state) shows each array's
shape, dtype and norm, flagged the same way. A Recorder shows what it holds and each layer's
last summaries. ``_repr_html_`` gives Jupyter a table, ``_repr_pretty_`` gives IPython the
same as text; ``repr`` and ``print`` are unchanged.

This module sits below the layers (it imports only `tinyvec.backend`): the layers hand it the
printed tree and their parameter arrays.

>>> import numpy as np, tinyvec as tv
>>> model = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1))
>>> model[1].weight[0, 0] = np.nan
>>> print(model_text(tv.show(model), [(p, getattr(o, n)) for p, o, n in tv.trainables(model)]))
Chain(
  Dense(2 => 3, tanh),                  # 9 parameters
  Dense(3 => 1),                        # 4 parameters
)                   # Total: 4 arrays, 13 parameters, 0.102 KiB.
! model.layers[1].weight: 1 NaN of 3
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .backend import is_array, to_numpy

__all__ = ["model_html", "model_text", "recorder_html", "recorder_text", "tree_html", "tree_text"]

_FLAG = "color:#b00020;font-weight:bold"


def nonfinite(a: Any) -> str:
    """The empty string for an array of finite numbers, else e.g. ``'2 NaN, 1 inf of 12'``."""
    v = to_numpy(a)
    if not np.issubdtype(v.dtype, np.inexact):
        return ""
    nan, inf = int(np.isnan(v).sum()), int(np.isinf(v).sum())
    if not nan and not inf:
        return ""
    parts = [f"{nan} NaN"] * bool(nan) + [f"{inf} inf"] * bool(inf)
    return f"{', '.join(parts)} of {v.size}"


def _flags(arrays: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    return [(path, f) for path, a in arrays if (f := nonfinite(a))]


def model_text(printed: str, arrays: Iterable[tuple[str, Any]]) -> str:
    """The printed model, then ``! PATH: 1 NaN of 3`` per parameter array that is not finite."""
    return "\n".join([printed, *(f"! {path}: {flag}" for path, flag in _flags(arrays))])


def model_html(printed: str, arrays: Iterable[tuple[str, Any]]) -> str:
    """The printed model in a ``<pre>``, a header saying whether every parameter is finite,
    and one flagged line per parameter array holding NaN or inf."""
    flags = _flags(arrays)
    head = (
        f'<span style="{_FLAG}">&#9888; {len(flags)} parameter array'
        f"{'s hold' if len(flags) > 1 else ' holds'} NaN or inf</span>"
        if flags
        else '<span style="color:#1b5e20">every parameter is finite</span>'
    )
    items = "".join(
        f'<li><code>{html.escape(p)}</code>: <span style="{_FLAG}">{f}</span></li>'
        for p, f in flags
    )
    return (
        f'<div class="tinyvec-model">{head}'
        f'<pre style="margin:0.3em 0">{html.escape(printed)}</pre>'
        + (f'<ul style="margin:0">{items}</ul>' if items else "")
        + "</div>"
    )


_BRANCH = object()  # a heading in a tree: the entries below it are indented


def _leaves(tree: Any, depth: int) -> Iterable[tuple[int, str, Any]]:
    """(depth, label, value) in order: a dict's entries, a tuple's items, the arrays at the end;
    a non-empty dict, tuple or list is a branch (value `_BRANCH`), its entries follow it one
    level deeper. With a stack of its own: a Tree is as deep as its model, any depth."""
    todo = [(depth, label, value) for label, value in reversed(_items(tree))]
    while todo:
        depth, label, value = todo.pop()
        if isinstance(value, dict | tuple | list) and value:
            yield depth, label, _BRANCH
            todo.extend((depth + 1, sub, v) for sub, v in reversed(_items(value)))
        else:
            yield depth, label, value


def _items(tree: Any) -> list[tuple[str, Any]]:
    """(label, value) of each entry of a dict, tuple or list (none of anything else)."""
    if isinstance(tree, dict):
        return [(str(key), value) for key, value in tree.items()]
    if isinstance(tree, tuple | list):
        return [(f"[{i}]", value) for i, value in enumerate(tree)]
    return []


def _describe(value: Any) -> tuple[str, str]:
    """(what, flag) for one leaf of a tree."""
    if is_array(value):
        v = to_numpy(value)
        norm = float(np.sqrt(np.sum(np.abs(v) ** 2))) if v.size else 0.0
        flag = nonfinite(v)
        shown = "nan" if math.isnan(norm) else f"{norm:.4g}"
        return f"{tuple(v.shape)} {v.dtype}  ‖·‖ = {shown}", flag
    return repr(value), ""


def tree_text(tree: dict) -> str:
    """A Tree of arrays as indented lines: each array's shape, dtype and norm, flagged."""
    lines = [f"{type(tree).__name__}:"]
    for depth, label, value in _leaves(tree, 1):
        indent = "  " * depth
        if value is _BRANCH:
            lines.append(f"{indent}{label}")
            continue
        what, flag = _describe(value)
        lines.append(f"{indent}{label}: {what}" + (f"  ! {flag}" if flag else ""))
    return "\n".join(lines)


def tree_html(tree: dict) -> str:
    """The same as `tree_text`, as a table with the non-finite arrays flagged in red."""
    rows, bad = [], 0
    for depth, label, value in _leaves(tree, 0):
        pad = f'style="padding-left:{0.3 + 1.2 * depth:.1f}em;text-align:left"'
        if value is _BRANCH:
            rows.append(f"<tr><td {pad}><b>{html.escape(label)}</b></td><td></td><td></td></tr>")
            continue
        what, flag = _describe(value)
        bad += bool(flag)
        rows.append(
            f"<tr><td {pad}>{html.escape(label)}</td>"
            f'<td style="text-align:left"><code>{html.escape(what)}</code></td>'
            f'<td style="{_FLAG}">{"&#9888; " + flag if flag else ""}</td></tr>'
        )
    head = f'<span style="{_FLAG}">&#9888; {bad} non-finite</span>' if bad else "all finite"
    return (
        f'<div class="tinyvec-tree"><b>{type(tree).__name__}</b> ({head})'
        f"<table>{''.join(rows)}</table></div>"
    )


_COLUMNS = ("o_norm", "delta_norm", "dW_norm", "cos_dA_delta", "delta_used_norm")
_HEADS = ("‖O^{k-1}‖", "‖δ^k‖", "‖ΔW^k‖", "cos(ΔA_own, −δ)", "‖δ̃^k‖")


def _recorder_summary(rec: Any) -> tuple[str, list[str], list[tuple[int, int, list]], list[str]]:
    rows = rec.rows
    steps = sorted({r["step"] for r in rows})
    layers = sorted({r["layer"] for r in rows})
    head = f"Recorder: {len(steps)} steps × {len(layers)} layers ({len(rows)} rows)"
    if rec.every:
        head += f"; snapshots every {rec.every} steps → {str(rec.path)!r}"
        head += f" ({len(rec.snapshots)} arrays held)"
    columns = [c for c in _COLUMNS if any(c in r for r in rows)]
    last, flags = [], []
    for k in layers:
        mine = [r for r in rows if r["layer"] == k]
        last.append((k, mine[-1]["step"], [mine[-1].get(c, math.nan) for c in columns]))
        for c in columns:
            bad = [r["step"] for r in mine if c in r and not math.isfinite(r[c])]
            if bad and c != "cos_dA_delta":
                flags.append(
                    f"layer {k}: {c} not finite at {len(bad)} of {len(mine)} steps, first {bad[0]}"
                )
    heads = [h for c, h in zip(_COLUMNS, _HEADS, strict=True) if c in columns]
    return head, heads, last, flags


def recorder_text(rec: Any) -> str:
    """What a Recorder holds, each layer's summaries at its last step, non-finite ones flagged."""
    head, heads, last, flags = _recorder_summary(rec)
    lines = [head]
    for k, step, values in last:
        cells = ", ".join(f"{h} {v:.4g}" for h, v in zip(heads, values, strict=True))
        lines.append(f"  layer {k} at step {step}: {cells}")
    return "\n".join(lines + [f"! {f}" for f in flags])


def recorder_html(rec: Any) -> str:
    """`recorder_text` as a table, one row per layer."""
    head, heads, last, flags = _recorder_summary(rec)
    cols = "".join(f"<th>{html.escape(h)}</th>" for h in heads)
    body = "".join(
        f"<tr><td>{k}</td><td>{step}</td>" + "".join(f"<td>{v:.4g}</td>" for v in values) + "</tr>"
        for k, step, values in last
    )
    items = "".join(f'<li style="{_FLAG}">&#9888; {html.escape(f)}</li>' for f in flags)
    return (
        f'<div class="tinyvec-recorder">{html.escape(head)}'
        + (
            f"<table><tr><th>layer k</th><th>last step</th>{cols}</tr>{body}</table>"
            if last
            else ""
        )
        + (f"<ul>{items}</ul>" if items else "")
        + "</div>"
    )
