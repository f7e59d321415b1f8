# %% [markdown]
# # Backpropagation by hand, beside tinyvec
#
# We take the seed network of the eigen experiment (science notes §4),
#
# `Chain(Dense(20,40,atan), SkipConnection(Dense(40,40,atan),+) ×3, Dense(40,3,atan), Dense(3,1))`,
#
# run one forward and backward pass **by hand with NumPy**, and compare every
# pre-activation $A^k$, every error vector $\delta^k = \partial L/\partial A^k$ and every
# increment $\Delta W^k$ with what tinyvec keeps on its layers after a step: `d.preact`,
# `d.delta`, `d.dW`. Features × batch: a column is one sample.

# %%
import os

import numpy as np

import tinyvec as tv
from tinyvec.experiments.demo import seed_network, task

QUICK = os.environ.get("TINYVEC_QUICK") == "1"  # the test suite runs this notebook small
batch = 8 if QUICK else 32

model = seed_network(h=20, m=40, rng=0)
x, y = task(batch, h=20, seed=0)
model

# %% [markdown]
# ## One step with tinyvec
#
# The mean squared error $L = \frac{1}{n}\sum (\hat y - y)^2$, its gradient, and one step of
# plain descent with rate $\alpha$. After it every Dense layer $k = 1, \dots, 6$ holds its records.

# %%
alpha = 0.05
state = tv.setup(tv.Descent(alpha), model)
W_before = [d.weight.copy() for d in tv.dense_layers(model)]  # the update replaces them
b_before = [d.bias.copy() for d in tv.dense_layers(model)]
loss, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
tv.update(state, model, grads)
dense = tv.dense_layers(model)  # depth order: dense[0] is layer k = 1
print(f"loss {float(loss):.6f};", len(dense), "Dense layers")

# %% [markdown]
# ## The forward pass by hand
#
# For a Dense layer, $A^k = W^k O^{k-1} + b^k$ and $O^k = \operatorname{atan}(A^k)$. A skip
# connection adds its input to its layer's output: the stream $h$ becomes
# $\operatorname{atan}(A^k) + h$. The last layer is linear: $\hat y = A^6$.

# %%
W, b = W_before, b_before
inputs, A = [], []
h = x
for k in range(6):
    inputs.append(h)  # O^{k-1}: what layer k reads
    A.append(W[k] @ h + b[k][:, None])
    if k == 5:
        h = A[k]  # the linear last layer
    elif k in (1, 2, 3):
        h = np.arctan(A[k]) + h  # SkipConnection(Dense, +)
    else:
        h = np.arctan(A[k])
yhat = h
print("loss by hand:", np.mean((yhat - y) ** 2))
for k in range(6):
    print(f"k={k + 1}: A^k equal to the layer's preact:", np.allclose(A[k], dense[k].preact))

# %% [markdown]
# ## The backward pass by hand
#
# Start from $\partial L/\partial \hat y = 2(\hat y - y)/n$ and go down. At each Dense layer
#
# $$\delta^k = \frac{\partial L}{\partial O^k} \odot \varphi'(A^k), \qquad
#   \frac{\partial L}{\partial O^{k-1}} = (W^k)^\top \delta^k ,$$
#
# with $\operatorname{atan}'(a) = 1/(1+a^2)$. A skip connection passes the gradient of its
# output on to its input unchanged, **plus** what flows back through its layer.

# %%
n = y.size
g = 2 * (yhat - y) / n  # ∂L/∂ŷ
delta = [None] * 6
for k in reversed(range(6)):
    dphi = 1.0 if k == 5 else 1 / (1 + A[k] ** 2)
    delta[k] = g * dphi
    back = W[k].T @ delta[k]  # ∂L/∂(the layer's input) through the layer
    g = back + g if k in (1, 2, 3) else back  # the skip adds the direct path
for k in range(6):
    err = np.abs(delta[k] - dense[k].delta).max()
    print(f"k={k + 1}: δ^k by hand vs model[k].delta: max |difference| {err:.1e}")

# %% [markdown]
# ## The weight increments
#
# A plain step changes each layer by $\Delta W^k = -\alpha\,\delta^k (O^{k-1})^\top$ and
# $\Delta b^k = -\alpha \sum_{\text{batch}} \delta^k$. tinyvec keeps the increment it applied
# as `d.dW` and `d.db`.

# %%
for k in range(6):
    dW = -alpha * delta[k] @ inputs[k].T
    db = -alpha * delta[k].sum(axis=1)
    print(f"k={k + 1}: ΔW^k {np.allclose(dW, dense[k].dW)}, Δb^k {np.allclose(db, dense[k].db)},",
          f"W^k after = W^k before + ΔW^k: {np.allclose(dense[k].weight, W[k] + dW)}")  # fmt: skip

# %% [markdown]
# ## One sample: each layer moves along −δ^k
#
# With a single sample $o = O^{k-1}$, a layer's own update moves its pre-activation exactly
# along $-\delta^k$: $\Delta W^k o + \Delta b^k = -\alpha(\lVert o\rVert^2 + 1)\,\delta^k$
# (science notes §1; the $+1$ is the bias, a weight on a constant input 1).

# %%
model1 = seed_network(h=20, m=40, rng=0)
x1, y1 = x[:, :1], y[:, :1]
tv.update(tv.setup(tv.Descent(alpha), model1), model1,
          tv.gradient(lambda m: tv.mse(m(x1), y1), model1))  # fmt: skip
for k, d in enumerate(tv.dense_layers(model1), start=1):
    o = d.input
    own = d.dW @ o + d.db[:, None]
    want = -alpha * (np.sum(o**2) + 1) * d.delta
    print(f"k={k}: max |ΔW o + Δb + α(‖o‖²+1)δ| = {np.abs(own - want).max():.1e}")

# %% [markdown]
# The same numbers come out on both of tinyvec's roads: wrap the step in
# `with tv.fast.off():` to run it on the reference road, one graph node per layer
# (see *The two roads*).
