"""`gradcheck`: the engine's gradient against central finite differences, in float64.

For every entry x_i of every floating argument (arrays, and the parameters of models),

    ∂f/∂x_i ≈ (f(x + ε e_i) - f(x - ε e_i)) / 2ε,

with an error of order ε² f‴; the check passes when |engine - numeric| ≤ atol + rtol |numeric|
for every entry, as ``torch.autograd.gradcheck`` and HIPS autograd's ``check_grads`` do. It is
the test to run on a new layer or a new `primitive`: a wrong vector-Jacobian product shows up
as the worst entry, named by its parameter path and index.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import device, is_array, namespace, to_numpy
from .devices import cpu, f64
from .engine.tensor import data
from .layers.base import fmap, trainables
from .optimise.training import gradient


class GradcheckError(AssertionError):
    """The engine's gradient differs from finite differences (the message names the entry)."""


@dataclass(frozen=True)
class GradcheckReport:
    """What `gradcheck` found: ``ok``, the number of entries ``checked``, and the ``worst``
    entry (its name, the engine's and the numerical derivative). True when ``ok``."""

    ok: bool
    checked: int
    worst: str
    engine: float
    numeric: float
    rtol: float
    atol: float

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        verdict = "gradients match" if self.ok else "gradients differ"
        return (
            f"{verdict} ({self.checked} entries, rtol={self.rtol:g}, atol={self.atol:g}); "
            f"worst: {self.worst}: engine {self.engine:.10g}, finite differences "
            f"{self.numeric:.10g} (|difference| {abs(self.engine - self.numeric):.3g})"
        )


def gradcheck(
    f: Callable[..., Any],
    *args: Any,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    raise_exception: bool = True,
) -> GradcheckReport:
    """Check ``tv.gradient(f, *args)`` against central differences of the scalar ``f``.

    ``args`` are arrays (floating ones are checked, integer ones such as class labels are
    passed as they are) and models (every parameter is checked). Everything is done on float64
    copies in the arguments' own namespace and on their device (NumPy copies for a namespace
    without float64), so the arguments are never changed, a float32 model is checked at
    float64 precision, and a constant ``f`` closes over (a target) may live where the
    arguments do. Raises `GradcheckError` naming the worst entry when an entry is off (or, with
    ``raise_exception=False``, returns a report that is false); otherwise returns the report.

    >>> import numpy as np, tinyvec as tv
    >>> x, y = np.array([[0.5, -1.0], [2.0, 0.0]]), np.zeros((1, 2))
    >>> report = tv.gradcheck(lambda m, x: tv.mse(m(x), y), tv.Dense(2, 1, tv.tanh, rng=0), x)
    >>> report.ok, report.checked
    (True, 7)
    >>> bad = tv.ops.primitive(lambda x: x**3, lambda g, out, x: (g * 2 * x**2,))  # not 3x²
    >>> tv.gradcheck(lambda x: tv.ops.sum(bad(x)), np.array([1.0, 2.0]))
    Traceback (most recent call last):
    ...
    tinyvec.gradcheck.GradcheckError: gradients differ (2 entries, ...); worst: args[0][1]: engine 8, finite differences 12 ...
    """
    if not args:
        raise TypeError("gradcheck(f, *args): give the arguments to differentiate f at")
    if not callable(f):
        raise TypeError(f"gradcheck(f, *args): f must be a function, got {type(f).__name__}")
    _tolerance("eps", eps, positive=True)
    _tolerance("rtol", rtol)
    _tolerance("atol", atol)
    wrt = [i for i, a in enumerate(args) if not is_array(a) or _checked(a)]
    if not wrt:
        raise TypeError(
            "gradcheck(f, *args): nothing to check: give a floating-point array or a model "
            f"among the arguments (got {', '.join(str(a.dtype) for a in args)} arrays)"
        )
    # the differentiated arguments as float64 copies; the others (integer labels) as they are
    full = [_float64(a) if i in wrt else a for i, a in enumerate(args)]

    def loss(*xs: Any) -> Any:
        values = list(full)
        for i, x in zip(wrt, xs, strict=True):
            values[i] = x
        return f(*values)

    def at() -> float:  # f at the current values of `full` (and of its models' parameters)
        return _scalar(loss(*(full[i] for i in wrt)))

    value = at()
    if not math.isfinite(value):
        raise ValueError(f"gradcheck: f is {value} at the given arguments")
    grads = gradient(loss, *(full[i] for i in wrt))
    grads = [grads] if len(wrt) == 1 else list(grads)

    worst = (-math.inf, "", 0.0, 0.0)
    checked = 0
    for i, g in zip(wrt, grads, strict=True):
        for name, x, engine, put in _entries(full, i, g, f"args[{i}]"):
            xp = namespace(x)
            # entry e's position, to perturb it alone without writing into x (JAX arrays
            # cannot be written): x ± ε at e, x itself elsewhere, on x's device
            positions = xp.reshape(xp.arange(math.prod(x.shape), device=device(x)), tuple(x.shape))
            for e, idx in enumerate(np.ndindex(tuple(x.shape))):
                mask = positions == e
                put(xp.where(mask, x + eps, x))
                up = at()
                put(xp.where(mask, x - eps, x))
                down = at()
                put(x)
                numeric = (up - down) / (2 * eps)
                mine = float(engine[idx]) if engine is not None else 0.0
                # how far past its tolerance the entry is (≤ 0: within it)
                excess = abs(mine - numeric) - (atol + rtol * abs(numeric))
                if not excess <= worst[0] or math.isnan(excess):
                    worst = (excess, f"{name}{list(idx) if idx else ''}", mine, numeric)
                checked += 1
    excess, where, mine, numeric = worst
    report = GradcheckReport(not excess > 0, checked, where, mine, numeric, rtol, atol)
    if not report.ok and raise_exception:
        raise GradcheckError(str(report))
    return report


def _tolerance(name: str, value: Any, positive: bool = False) -> None:
    """Refuse a tolerance that is not a finite number ≥ 0 (``positive``: > 0): a NaN would
    pass every entry, a negative one fail every entry."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"gradcheck: {name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        what = "a small positive number" if positive else "a finite number ≥ 0"
        raise ValueError(f"gradcheck: {name} must be {what}, got {value}")


def _checked(a: Any) -> bool:
    """A floating array: differentiated. (Integer arrays are constants such as labels.)"""
    if not is_array(a):
        return False
    xp = namespace(a)
    if xp.isdtype(a.dtype, "complex floating"):
        raise TypeError("gradcheck: complex arguments are not supported")
    return bool(xp.isdtype(a.dtype, "real floating"))


def _home(a: Any) -> Any:
    """The namespace of ``a`` when it has float64 (NumPy, CuPy, array-api-strict, PyTorch, JAX
    with x64), else NumPy: where `gradcheck` computes."""
    xp = namespace(a)
    float64 = getattr(xp, "float64", None)
    return xp if float64 is not None and xp.astype(a, float64).dtype == float64 else np


def _float64(a: Any) -> Any:
    """A float64 copy of array or model ``a``, in its namespace and on its device (`_home`)."""
    if is_array(a):
        xp = _home(a)
        a = a if xp is namespace(a) else to_numpy(a)
        return xp.astype(a, xp.float64, copy=True)
    first = next((data(getattr(layer, n)) for _, layer, n in trainables(a)), None)
    if first is not None and _home(first) is np and namespace(first) is not np:
        a = cpu(a)
    return f64(fmap(lambda x: x, a))  # (a copy even where f64 has nothing to cast)


def _scalar(value: Any) -> float:
    v = to_numpy(data(value))
    if v.ndim != 0:
        raise ValueError(f"gradcheck: f must return a scalar, got shape {tuple(v.shape)}")
    return float(v)


def _entries(
    full: list[Any], i: int, grad: Any, name: str
) -> Iterator[tuple[str, Any, Any, Callable[[Any], None]]]:
    """(name, the float64 array to perturb, the engine's gradient of it as NumPy, and a
    function that puts a new value in its place) for argument ``full[i]``."""
    arg = full[i]
    if is_array(arg):
        yield name, arg, to_numpy(grad), lambda v: full.__setitem__(i, v)
        return
    for path, layer, attr in trainables(arg):
        g = _lookup(grad, path)
        engine = None if g is None else to_numpy(g)
        yield path, getattr(layer, attr), engine, functools.partial(setattr, layer, attr)


def _lookup(tree: Any, path: str) -> Any:
    """The entry of a gradient tree at a parameter path (``model.layers[0].weight``)."""
    node = tree
    for attr, index in re.findall(r"\.(\w+)|\[(\d+)\]", path.removeprefix("model")):
        if node is None:
            return None
        node = node[int(index)] if index else node[attr]
    return node
