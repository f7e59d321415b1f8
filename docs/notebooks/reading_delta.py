# %% [markdown]
# # Reading δ and ΔW over training
#
# A `tv.Recorder` given to `tv.train` reads, after every step, what each Dense layer already
# holds, and keeps per layer $k$ and step: $\lVert O^{k-1}\rVert$, $\lVert\delta^k\rVert$,
# $\lVert\Delta W^k\rVert$ and $\cos(\Delta A^k_{\text{own}}, -\delta^k)$, where
# $\Delta A^k_{\text{own}} = \Delta W^k O^{k-1} + \Delta b^k$ is the move of $A^k$ due to the
# layer's own update. With `every=N, path=…` it also keeps full snapshots of $\delta^k$,
# $O^{k-1}$ and $\Delta W^k$.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import tinyvec as tv
from tinyvec.experiments.demo import seed_network, task

QUICK = os.environ.get("TINYVEC_QUICK") == "1"  # the test suite runs this notebook small
steps = 40 if QUICK else 600

model = seed_network(h=20, m=40, rng=0)
x, y = task(64, h=20, seed=0)
state = tv.setup(tv.Descent(0.05), model)
folder = Path(tempfile.mkdtemp())
rec = tv.Recorder(every=10, path=folder / "run.npz")
losses = tv.train(tv.mse, model, [(x, y)] * steps, state, recorder=rec, progress=False)
rec  # in Jupyter: each layer's last summaries, anything not finite flagged

# %% [markdown]
# ## ‖δ^k‖ and ‖ΔW^k‖ per layer
#
# `rec.column(name, k)` is one summary as a time series for layer $k$ (1-based).

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for k in range(1, 7):
    axes[0].semilogy(rec.column("delta_norm", k), label=f"k = {k}")
    axes[1].semilogy(rec.column("dW_norm", k))
    axes[2].plot(rec.column("cos_dA_delta", k))
axes[0].set(title="‖δ^k‖", xlabel="step")
axes[1].set(title="‖ΔW^k‖", xlabel="step")
axes[2].set(title="cos(ΔA^k own, −δ^k)", xlabel="step", ylim=(0, 1.05))
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# On a batch of 64 the cosine is below 1: the samples interact through the Gram matrix
# $G = O^\top O$, $\Delta A_i = -\alpha\sum_j (o_j\cdot o_i + 1)\,\delta_j$. One sample at a time
# it is exactly 1 (science notes §1):

# %%
one = seed_network(h=20, m=40, rng=0)
rec1 = tv.Recorder()
batches = [(x[:, i : i + 1], y[:, i : i + 1]) for i in range(10)]
tv.train(tv.mse, one, batches, tv.setup(tv.Descent(0.05), one), recorder=rec1, progress=False)
print("one sample per step, cos for layer 3:", np.round(rec1.column("cos_dA_delta", 3), 12))

# %% [markdown]
# ## Snapshots
#
# `Recorder(every=10, path=…)` kept the arrays of every 10th step; `train` wrote them when it
# finished. The keys are `step{N}/layer{k}/{input, delta, dW}`.

# %%
snap = np.load(folder / "run.npz")
last = max(int(key.split("/")[0][4:]) for key in snap.files)
delta3, O3, dW3 = (snap[f"step{last}/layer3/{name}"] for name in ("delta", "input", "dW"))
print(f"step {last}, layer 3: δ {delta3.shape}, O^2 {O3.shape}, ΔW {dW3.shape}")
print("ΔW^3 = −α δ^3 (O^2)ᵀ:", np.allclose(dW3, -0.05 * delta3 @ O3.T))

# %% [markdown]
# A plain step's $\Delta W^k = -\alpha\,\delta^k (O^{k-1})^\top$ is a sum of one outer product per
# sample, so its rank is at most the batch size. With a batch of 4 the 40 × 40 increment has 4
# nonzero singular values:

# %%
small = seed_network(h=20, m=40, rng=0)
tv.update(tv.setup(tv.Descent(0.05), small), small,
          tv.gradient(lambda m: tv.mse(m(x[:, :4]), y[:, :4]), small))  # fmt: skip
s = np.linalg.svd(tv.dense_layers(small)[2].dW, compute_uv=False)
print("singular values of ΔW^3:", np.round(s[:6], 8))
