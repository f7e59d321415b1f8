"""Layers: the protocol (`base`), `Dense`, the containers, and initialisers."""

from .base import DimensionMismatch, Layer, fmap, show, trainables, walk
from .containers import Chain, Parallel, SkipConnection, activations, add, mul
from .dense import Dense
from .init import glorot_normal, glorot_uniform, kaiming_normal, scaled, seed


def dense_layers(model) -> list[Dense]:
    """Every Dense layer of ``model`` in depth order k = 1..L (through Chains, SkipConnections
    and Parallels): entry k-1 is layer k of the formulas."""
    return [layer for _, layer in walk(model) if isinstance(layer, Dense)]


__all__ = [
    "Chain",
    "Dense",
    "DimensionMismatch",
    "Layer",
    "Parallel",
    "SkipConnection",
    "activations",
    "add",
    "dense_layers",
    "fmap",
    "glorot_normal",
    "glorot_uniform",
    "kaiming_normal",
    "mul",
    "scaled",
    "seed",
    "show",
    "trainables",
    "walk",
]
