# %% [markdown]
# # Writing and gradchecking your own layer
#
# A layer is a callable object that names two things: `params`, its trainable array
# attributes, and `children`, its sub-layers. Inside `tv.gradient` the parameters hold
# `Tensor`s, so a `__call__` written with ordinary operators and `tv.ops` functions is
# differentiated without a backward pass of its own. `tv.gradcheck` then compares that gradient
# with central finite differences.

# %%
import os

import numpy as np

import tinyvec as tv
from tinyvec import ops

QUICK = os.environ.get("TINYVEC_QUICK") == "1"  # the test suite runs this notebook small
epochs = 30 if QUICK else 300


class Scale(tv.Layer):
    """y = s ⊙ x + b: one scale s_i and one shift b_i per feature."""

    params = ("scale", "bias")  # what gradients, optimisers and save/load will see

    def __init__(self, n):
        self.scale, self.bias = np.ones(n), np.zeros(n)

    def __call__(self, x):
        n = self.scale.shape[0]  # s and b as columns, to broadcast over the batch
        return ops.reshape(self.scale, (n, 1)) * x + ops.reshape(self.bias, (n, 1))


model = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), Scale(3))
model

# %% [markdown]
# ## Check the gradient
#
# `tv.gradcheck(f, model)` differentiates `f` with the engine and by central differences in
# float64, entry by entry, and reports the worst one.

# %%
rng = np.random.default_rng(0)
x, y = rng.standard_normal((2, 5)), rng.standard_normal((3, 5))
print(tv.gradcheck(lambda m: tv.mse(m(x), y), model))

# %% [markdown]
# ## A forgotten parameter is an error, not a silent bug
#
# If `bias` were missing from `params`, training would never move it. tinyvec refuses a layer
# holding a floating-point array it does not name, at first use:


# %%
class Forgetful(Scale):
    params = ("scale",)  # bias forgotten


try:
    tv.gradient(lambda m: tv.mse(m(x), y), tv.Chain(tv.Dense(2, 3, rng=0), Forgetful(3)))
except TypeError as e:
    print("TypeError:", e)

# %% [markdown]
# ## A wrong derivative is caught
#
# A new operation is its forward computation beside its vector-Jacobian product,
# `ops.primitive(forward, vjp)`. Here is $x \mapsto x^3$ with a deliberate mistake in the vjp
# (it should be $3x^2 g$):

# %%
cube_wrong = ops.primitive(lambda a: a**3, lambda g, out, a: (2 * g * a * a,), name="cube")


class Cube(tv.Layer):
    params = ()

    def __call__(self, x):
        return cube_wrong(x)


bad = tv.Chain(tv.Dense(2, 3, rng=0), Cube())
report = tv.gradcheck(lambda m: tv.mse(m(x), y), bad, raise_exception=False)
print(report)

# %% [markdown]
# ## Train it
#
# The layer trains like any other: optimisers, `tv.train`, `save`/`load` and the fast road
# see its `params`. (A custom layer makes the Chain run layer by layer instead of as one
# written program; the numbers are the same.)

# %%
xs = np.linspace(-1, 1, 32)[None, :].repeat(2, axis=0)
ys = np.vstack([np.sin(np.pi * xs[0]), np.cos(np.pi * xs[0]), xs[0] ** 2]) * 3
model = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), Scale(3))
state = tv.setup(tv.Adam(0.05), model)
losses = tv.train(tv.mse, model, [(xs, ys)] * epochs, state, progress=False)
print(f"loss {losses[0]:.3f} → {losses[-1]:.3f}; scale {np.round(model[1].scale, 2)}")

# %% [markdown]
# ## NaN is flagged in the display
#
# In Jupyter a model shows its tree and a flag on every parameter array holding NaN or inf,
# by its path in the model:

# %%
broken = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), Scale(3))
broken[1].scale[1] = np.nan
broken
