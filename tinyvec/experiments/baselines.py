"""The training step of `tinyvec bench`'s networks written by hand, without tinyvec: in NumPy
(backprop for this network only, the baseline every ratio is taken against), in PyTorch eager
and in JAX jit (when installed), and stacked (E runs with a leading member axis: NumPy by hand,
JAX ``jit(vmap)``). Each ``*_step(spec, x, y, dtype)`` returns ``step()`` with ``step.reset()``
(back to the initial weights, outside the timing); PyTorch's and JAX's return None when the
library is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LR = 0.01  # plain gradient descent, the same η for every implementation


def numpy_step(spec, x, y, dtype: str) -> Callable[[], Any]:
    """Backprop by hand: what tinyvec's step computes, written for this network only."""
    import numpy as np

    import tinyvec as tv

    Ws = [tv.glorot_uniform((o, i), k).astype(dtype) for k, (i, o, _, _) in enumerate(spec)]
    bs = [np.zeros(o, dtype=dtype) for (_, o, _, _) in spec]
    acts = [act for (_, _, act, _) in spec]
    skips = [skip for (_, _, _, skip) in spec]

    def step() -> None:
        Os, As, o = [], [], x
        for W, b, act, skip in zip(Ws, bs, acts, skips, strict=True):
            Os.append(o)
            A = W @ o + b[:, None]
            As.append(A)
            out = np.arctan(A) if act == "atan" else np.maximum(A, 0) if act == "relu" else A
            o = out + o if skip else out
        g = 2 * (o - y) / o.size
        for k in range(len(Ws) - 1, -1, -1):
            A = As[k]
            if acts[k] == "atan":
                delta = g / (1 + A * A)
            elif acts[k] == "relu":
                delta = g * (A > 0)
            else:
                delta = g
            dW, db = delta @ Os[k].T, delta.sum(axis=1)
            if k:
                g = Ws[k].T @ delta + (g if skips[k] else 0)
            Ws[k] -= LR * dW
            bs[k] -= LR * db

    initial = [W.copy() for W in Ws], [b.copy() for b in bs]

    def reset() -> None:  # in place: `step` holds these very arrays
        for a, a0 in zip(Ws + bs, initial[0] + initial[1], strict=True):
            a[...] = a0

    step.weights = lambda: Ws  # type: ignore[attr-defined]
    step.reset = reset  # type: ignore[attr-defined]
    return step


def torch_step(spec, x, y, dtype: str) -> Callable[[], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    tdt = getattr(torch, dtype)
    acts = {"atan": torch.atan, "relu": torch.relu, "identity": lambda a: a}
    params = []
    for i, o, _, _ in spec:
        W = torch.empty(o, i, dtype=tdt)
        torch.nn.init.xavier_uniform_(W)
        params += [W.requires_grad_(), torch.zeros(o, 1, dtype=tdt, requires_grad=True)]
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    initial = [p.detach().clone() for p in params]

    def step() -> None:
        o = tx
        for k, (_, _, act, skip) in enumerate(spec):
            out = acts[act](params[2 * k] @ o + params[2 * k + 1])
            o = out + o if skip else out
        loss = torch.mean((o - ty) ** 2)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= LR * g

    def reset() -> None:
        with torch.no_grad():
            for p, p0 in zip(params, initial, strict=True):
                p.copy_(p0)

    step.reset = reset  # type: ignore[attr-defined]
    return step


def jax_step(spec, x, y, dtype: str) -> Callable[[], Any] | None:
    found = _jax(spec, dtype)
    if found is None:
        return None
    jax, jnp, sgd = found
    key = jax.random.PRNGKey(0)
    params = []
    for i, o, _, _ in spec:
        key, sub = jax.random.split(key)
        s = (6 / (i + o)) ** 0.5
        params.append((jax.random.uniform(sub, (o, i), dtype, -s, s), jnp.zeros((o, 1), dtype)))
    return _jax_runner(jax, jax.jit(sgd), params, jnp.asarray(x), jnp.asarray(y))


def numpy_stack_step(spec, x, y, dtype: str) -> Callable[[], Any]:
    """`numpy_step` with a leading member axis, by hand: (E, out, in) weights, batched matmul."""
    import numpy as np

    import tinyvec as tv

    E = x.shape[0]
    Ws = [np.stack([tv.glorot_uniform((o, i), k).astype(dtype)] * E) for k, (i, o, _, _) in enumerate(spec)]  # fmt: skip
    bs = [np.zeros((E, o), dtype=dtype) for (_, o, _, _) in spec]
    acts = [act for (_, _, act, _) in spec]
    skips = [skip for (_, _, _, skip) in spec]
    n = y.shape[1] * y.shape[2]

    def step() -> None:
        Os, As, o = [], [], x
        for W, b, act, skip in zip(Ws, bs, acts, skips, strict=True):
            Os.append(o)
            A = W @ o + b[:, :, None]
            As.append(A)
            out = np.arctan(A) if act == "atan" else np.maximum(A, 0) if act == "relu" else A
            o = out + o if skip else out
        g = 2 * (o - y) / n
        for k in range(len(Ws) - 1, -1, -1):
            A = As[k]
            delta = (
                g / (1 + A * A) if acts[k] == "atan" else g * (A > 0) if acts[k] == "relu" else g
            )
            dW, db = delta @ Os[k].transpose(0, 2, 1), delta.sum(axis=2)
            if k:
                g = Ws[k].transpose(0, 2, 1) @ delta + (g if skips[k] else 0)
            Ws[k] -= LR * dW
            bs[k] -= LR * db

    initial = [W.copy() for W in Ws + bs]

    def reset() -> None:
        for a, a0 in zip(Ws + bs, initial, strict=True):
            a[...] = a0

    step.reset = reset  # type: ignore[attr-defined]
    return step


def jax_vmap_step(spec, x, y, dtype: str) -> Callable[[], Any] | None:
    """JAX: ``jit(vmap(one step))`` over the E members (None when JAX is not installed)."""
    found = _jax(spec, dtype)
    if found is None:
        return None
    jax, jnp, sgd = found
    E = x.shape[0]
    params = []
    for i, o, _, _ in spec:
        s = (6 / (i + o)) ** 0.5
        W = jax.random.uniform(jax.random.PRNGKey(i * 1000 + o), (o, i), dtype, -s, s)
        params.append((jnp.stack([W] * E), jnp.zeros((E, o, 1), dtype)))
    return _jax_runner(jax, jax.jit(jax.vmap(sgd)), params, jnp.asarray(x), jnp.asarray(y))


def _jax(spec, dtype: str) -> tuple[Any, Any, Callable[..., Any]] | None:
    """(jax, jax.numpy, one plain SGD step of the network ``spec`` in JAX, params ↦ params −
    η ∇L(params; x, y)) set for ``dtype``, or None without JAX."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    acts = {"atan": jnp.arctan, "relu": jax.nn.relu, "identity": lambda a: a}

    def loss(params, x, y):
        o = x
        for (W, b), (_, _, act, skip) in zip(params, spec, strict=True):
            out = acts[act](W @ o + b)
            o = out + o if skip else out
        return jnp.mean((o - y) ** 2)

    def sgd(params, x, y):
        grads = jax.grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

    return jax, jnp, sgd


def _jax_runner(jax, update, params, x, y) -> Callable[[], Any]:
    """``step()``: the compiled ``update`` of the parameters once, waited for; ``step.reset()``
    goes back to ``params`` (JAX arrays are immutable: the first ones are still there)."""
    box = [params]

    def step() -> None:
        box[0] = update(box[0], x, y)
        jax.block_until_ready(box[0])

    def reset() -> None:
        box[0] = params

    step.reset = reset  # type: ignore[attr-defined]
    return step
