"""Custom layers in tinyvec: a worked example of the layer protocol.

A layer is any callable object that names two things (see tinyvec/layers/base.py):

- ``params``: the attributes holding the arrays that training changes;
- ``children``: the attributes holding sub-layers (the two layers below have none).

That is all `tv.gradient`, `tv.setup`/`tv.update`, `tv.save`/`tv.load`, `tv.to` and
`print(model)` need. Inside `tv.gradient` every parameter attribute temporarily holds a
`tv.Tensor`, so a ``__call__`` written with ordinary operators and `tv.ops` is
differentiated automatically: no backward pass to write.

Run it with ``python examples/custom_layer.py``.
"""

from __future__ import annotations

import numpy as np

import tinyvec as tv
from tinyvec import ops


class Scale(tv.Layer):
    """y = s ⊙ x + b: one scale s_i and one shift b_i per feature (Flux's ``Scale``)."""

    params = ("scale", "bias")  # what gradients, optimisers and save/load will see

    def __init__(self, n: int) -> None:
        self.scale = np.ones(n)  # s = 1, b = 0: the layer starts as the identity
        self.bias = np.zeros(n)

    def __call__(self, x):
        n = self.scale.shape[0]
        # s and b as columns (n, 1), so they broadcast over the batch (one column per sample)
        return ops.reshape(self.scale, (n, 1)) * x + ops.reshape(self.bias, (n, 1))

    def __repr__(self) -> str:
        return f"Scale({self.scale.shape[0]})"


class Conv1D(tv.Layer):
    """One filter w of width k slid along the features ("valid" convolution):
    y_i = Σ_j w_j x_{i+j} + b for i = 0, …, n - k, so n features give n - k + 1."""

    params = ("weight", "bias")

    def __init__(self, k: int, rng=None) -> None:
        rng = np.random.default_rng(rng)
        self.weight = rng.uniform(-1, 1, size=(1, k)) / np.sqrt(k)  # a row vector (1, k)
        self.bias = np.zeros(1)

    def __call__(self, x):
        k = self.weight.shape[1]
        n_out = x.shape[0] - k + 1
        # output row i is the filter (1, k) times the window of features i..i+k-1 (k, batch)
        rows = [self.weight @ x[i : i + k, :] for i in range(n_out)]
        return ops.concat(rows, axis=0) + self.bias  # stack the rows: (n_out, batch)

    def __repr__(self) -> str:
        return f"Conv1D({self.weight.shape[1]})"


def make_data(n_features: int = 8, n_samples: int = 128, seed: int = 0):
    """A made-up regression task: y = mean_i tanh(x_i + x_{i+1} + x_{i+2}), a sum of local
    patterns, which a convolution followed by a small Dense network can learn."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_features, n_samples))
    local = x[:-2] + x[1:-1] + x[2:]  # every window of 3 neighbouring features
    y = np.tanh(local).mean(axis=0, keepdims=True)  # (1, n_samples)
    return x, y


def make_model(n_features: int = 8, seed: int = 0) -> tv.Chain:
    """Scale → Conv1D(3) → Dense(tanh) → Dense: custom and built-in layers mix freely."""
    return tv.Chain(
        Scale(n_features),
        Conv1D(3, rng=seed),
        tv.Dense(n_features - 2, 16, tv.tanh, rng=seed),
        tv.Dense(16, 1, rng=seed + 1),
    )


def main(seed: int = 0, steps: int = 300, verbose: bool = True) -> list[float]:
    """Train the model full-batch with Adam and return the loss of every step."""
    x, y = make_data(seed=seed)
    model = make_model(seed=seed)
    state = tv.setup(tv.Adam(0.01), model)

    def report(step, model, loss):
        if verbose and (step == 1 or step % 50 == 0):
            print(f"step {step:4d}   loss {loss:.5f}")

    if verbose:
        print(model)
        # the engine's gradient of the new layers against finite differences, before training
        print(tv.gradcheck(lambda m: tv.mse(m(x[:, :8]), y[:, :8]), model))
    return tv.train(
        lambda m, x, y: tv.mse(m(x), y),
        model,
        [(x, y)],  # one batch: the whole data set
        state,
        epochs=steps,
        progress=False,
        callbacks=[report],
    )


if __name__ == "__main__":
    main()
