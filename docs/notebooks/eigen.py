# %% [markdown]
# # The eigen-operator experiment, a quick run
#
# Seed 001 asks a network $N$ to learn a mean-zero eigenfunction of the operator
#
# $$(T f)(x) = f(Ax) + f(Bx)$$
#
# on unit vectors $x \in \mathbb{R}^{20}$, with $A$ and $B$ random orthogonal matrices. Each
# step draws fresh unit vectors, makes the targets $y = N(Ax) + N(Bx)$ with the current network
# held fixed, and takes a gradient step on $-R^2(N(x), y)$. The learned eigenvalue is
# $\hat\lambda = \operatorname{cov}(N(x), y) / \operatorname{var} N(x)$. `tinyvec eigen` is the
# full study (science notes §4); this notebook writes its loop out with the pieces of
# `tinyvec.analysis.eigen_operator`.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import tinyvec as tv
from tinyvec.analysis.eigen_operator import (
    Spectrum,
    apply_operator,
    lambda_hat,
    linear_part,
    make_operators,
    r_squared,
    unit_vectors,
)

QUICK = os.environ.get("TINYVEC_QUICK") == "1"  # the test suite runs this notebook small
steps = 150 if QUICK else 3000
h, m, r = 20, 40, 20

A, B = make_operators(h, t=1.0, seed=1)
spectrum = Spectrum.of(A, B)
print("A orthogonal:", np.allclose(A.T @ A, np.eye(h)))

# %% [markdown]
# ## The exact spectrum
#
# On linear functions $f(x) = v\cdot x$ the operator acts as $(A+B)^\top$, so the degree-1
# eigenvalues are those of $A+B$; on degree 2 (quadratic forms $x^\top S x$, $S$ traceless) they
# are those of $S \mapsto A^\top S A + B^\top S B$. Every $|\mu| \le 2$.

# %%
fig, ax = plt.subplots(figsize=(5, 4))
for d, style in ((2, dict(s=8, c="0.7")), (1, dict(s=25, c="C0"))):
    mu = spectrum.values[spectrum.degrees == d]
    ax.scatter(mu.real, mu.imag, label=f"degree {d}", **style)
ax.set(xlabel="Re μ", ylabel="Im μ", title="spectrum of T (degree ≤ 2)")
ax.legend()
plt.show()

# %% [markdown]
# ## The network and the loop
#
# The seed's network, with a trainable `Dense(3, 1)` last and the skip layers starting near 0.

# %%
rng = np.random.default_rng(1)
skip = tv.scaled(tv.glorot_uniform, 1e-3)
model = tv.Chain(
    tv.Dense(h, m, tv.atan, rng=rng),
    *[tv.SkipConnection(tv.Dense(m, m, tv.atan, init=skip, rng=rng), tv.add) for _ in range(3)],
    tv.Dense(m, 3, tv.atan, rng=rng),
    tv.Dense(3, 1, rng=rng),
)
state = tv.setup(tv.Descent(0.1), model)
data = np.random.default_rng([1, 1])
lam, r2 = [], []
for _ in range(steps):
    x = unit_vectors(h, r, data)
    y = apply_operator(model, A, B, x)  # targets from the current network, no gradient
    loss, grads = tv.withgradient(lambda m, x=x, y=y: -tv.r2(m(x), y), model)
    f = model[-1].output  # N(x) of this forward pass
    tv.update(state, model, grads)
    lam.append(lambda_hat(f, y))
    r2.append(-float(loss))

# %% [markdown]
# ## What it learned
#
# On a fixed probe of 1000 unit vectors: $\hat\lambda$ and $R^2$, the eigenvalue at the end of
# the real axis (where this ascent settles, science notes §4), and how linear the learned
# function is.

# %%
probe = unit_vectors(h, 1000, np.random.default_rng([1, 2]))
f, y = model(probe), apply_operator(model, A, B, probe)
lam_probe = lambda_hat(f, y)
end = spectrum.extreme_degree1(lam_probe)
v, linear_share = linear_part(probe, f)
print(f"λ̂ = {lam_probe:.4f}, R² = {r_squared(f, y):.5f} after {steps} steps")
print(f"degree-1 eigenvalue at the end of the real axis: {end['real']:.4f}"
      f"{end['imag']:+.4f}i (|λ̂ − μ| = {end['distance']:.3g})")  # fmt: skip
print(f"share of the variance of N that is linear: {linear_share:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
axes[0].plot(lam, lw=0.8)
axes[0].axhline(end["real"], color="k", ls="--", label="Re μ at the end of the real axis")
axes[0].set(xlabel="step", ylabel="λ̂ (batch)")
axes[0].legend()
axes[1].semilogy(1 - np.array(r2), lw=0.8)
axes[1].set(xlabel="step", ylabel="1 − R² (batch)")
fig.tight_layout()
plt.show()

# %% [markdown]
# With the full 3000 steps the run lands on the real degree-1 eigenvalue of largest real part,
# not on the eigenvalue of largest modulus, which the seed expected: see the
# [eigen study](../studies/eigen.md) for why, for eight seeds, and for K outputs that learn
# complex pairs (`tinyvec eigen --k 3`).
