"""The autograd engine: `tensor` (tracing), `ops` (the derivative table), `activations`,
`losses`."""

from . import ops
from .activations import Activation, atan, gelu, identity, leakyrelu, relu, sigmoid, softplus, tanh
from .losses import crossentropy, mse, onehot, r2
from .tensor import Tensor, no_grad

__all__ = [
    "Activation",
    "Tensor",
    "atan",
    "crossentropy",
    "gelu",
    "identity",
    "leakyrelu",
    "mse",
    "no_grad",
    "onehot",
    "ops",
    "r2",
    "relu",
    "sigmoid",
    "softplus",
    "tanh",
]
