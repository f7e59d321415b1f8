"""The vector analysis of training steps, and a monitor that tells when training is complete.

    python examples/vector_analysis.py

For each Dense layer k, the move of its pre-activation on the same input fed before and after
one step splits exactly into ΔW^k O^{k-1} + Δb^k (own), W^k ΔO^{k-1} (inherited from the
layers below) and ΔW^k ΔO^{k-1} (second order). `tinyvec analyze` makes every figure of such a
run; this script shows the three ways in: one step, a recorder inside `tv.train`, a monitor.
"""

import numpy as np

import tinyvec as tv
from tinyvec.analysis import CompletionMonitor, VectorRecorder, analyze_step

rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, size=(2, 64))  # features × samples
y = np.sin(np.pi * x[:1]) * x[1:]
model = tv.Chain(
    tv.Dense(2, 16, tv.tanh, rng=1), tv.Dense(16, 16, tv.tanh, rng=2), tv.Dense(16, 1, rng=3)
)
state = tv.setup(tv.Descent(0.1), model)


def loss(m, x, y):
    return tv.mse(m(x), y)


# 1. one step: gradient, update, and the same input fed a second time
value, layers = analyze_step(loss, model, state, x, y)
for r in layers:
    parts = r["own"] + r["inherited"] + r["second"]
    print(f"layer {r['layer']}: ‖ΔA‖ = {r['dA_norm']:.3e}, ‖inherited‖/‖own‖ = {r['ratio']:.3f}, "
          f"cos(ΔA, −δ) = {r['cos_total_delta']:.3f}, "
          f"|ΔA − (own + inherited + second)| ≤ {np.abs(r['dA'] - parts).max():.1e}")  # fmt: skip
print("per-sample gradient norms of layer 3:", np.round(layers[2]["per_sample_grad_norms"][:5], 4))

# 2. every step of a run, through the recorder; 3. the completion monitor as a callback
recorder = VectorRecorder()
monitor = CompletionMonitor(x, eps=1e-4, patience=10, lr=0.1)
tv.train(
    loss, model, [(x, y)], state, epochs=500, recorder=recorder, callbacks=[monitor], progress=False
)
print(
    "median ‖inherited‖/‖own‖ per layer:",
    np.round(np.nanmedian(recorder.matrix("ratio"), axis=1), 3),
)
print(
    "effective rank of O^{k-1} at the last step:",
    np.round(recorder.matrix("effective_rank")[:, -1], 2),
)
status = monitor.status()
print(
    f"completion after {status['step']} steps: {status['kind']} (period {status['period']}), "
    f"function residual {status['function_residual']:.2e}"
)
