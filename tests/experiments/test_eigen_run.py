"""One seed of the eigen study: the targets and the probe measurements of its network."""

import numpy as np

from tinyvec.analysis.eigen_operator import (
    apply_operator,
    make_operators,
    unit_vectors,
)
from tinyvec.experiments import eigen_config


def test_targets_are_plain_arrays_of_the_current_network():
    c = eigen_config.Config()
    model = eigen_config.build_network(c, np.random.default_rng(0))
    A, B = make_operators(20, 1.0, seed=0)
    x = unit_vectors(20, 7, np.random.default_rng(1))
    y = apply_operator(model, A, B, x)
    assert type(y) is np.ndarray and y.shape == (1, 7)
    assert np.allclose(y, model(A @ x) + model(B @ x))
