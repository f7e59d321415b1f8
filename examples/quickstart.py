"""The README's tour as a script: build the seed network, take one step, read δ^k and ΔW^k."""

import numpy as np

import tinyvec as tv
from tinyvec import Chain, Dense, SkipConnection

h, m = 20, 40
model = Chain(
    Dense(h, m, tv.atan),
    SkipConnection(Dense(m, m, tv.atan), tv.add),  # connection(layer(x), x)
    SkipConnection(Dense(m, m, tv.atan), tv.add),
    SkipConnection(Dense(m, m, tv.atan), tv.add),
    Dense(m, 3, tv.atan),
    Dense(3, 1),
)
print(model)

x = np.random.default_rng(0).standard_normal((h, 32))  # features × batch: a column is a sample
y = np.zeros((1, 32))

state = tv.setup(tv.Descent(0.01), model)
loss, grads = tv.withgradient(lambda m: tv.mse(m(x), y), model)
tv.update(state, model, grads)

d = model[0]  # layer k = 1
print("loss", float(loss))
print("W", d.weight.shape, "b", d.bias.shape)
print("O^0", d.input.shape, "A^1", d.preact.shape, "δ^1", d.delta.shape)
print("ΔW^1 = -α δ^1 O^0ᵀ:", np.allclose(d.dW, -0.01 * d.delta @ d.input.T))
print("Dense layers in depth order:", [repr(d) for d in tv.dense_layers(model)])
