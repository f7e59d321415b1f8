"""The eigen study's config and network: the seed's network, the even branch, K auto."""

from dataclasses import replace

import numpy as np

import tinyvec as tv
from tinyvec.analysis.eigen_operator import Spectrum, make_operators, unit_vectors
from tinyvec.experiments import eigen_config


def test_network_is_the_seeds_with_near_zero_skip_weights():
    c = eigen_config.Config()
    model = eigen_config.build_network(c, np.random.default_rng(0))
    assert repr(model) == (
        "Chain(Dense(20 => 40, atan), SkipConnection(Dense(40 => 40, atan), +), "
        "SkipConnection(Dense(40 => 40, atan), +), SkipConnection(Dense(40 => 40, atan), +), "
        "Dense(40 => 3, atan), Dense(3 => 1))"
    )
    W = eigen_config.skip_weights(model)
    assert W.shape == (3, 40, 40)
    assert np.abs(W).max() <= 1e-3 * np.sqrt(6 / 80)
    assert np.abs(model[0].weight).max() > 0.1


def test_the_even_branch_adds_quadratic_forms():
    """``even = q``: the last layer also reads (Vx)², so the network has an even part from
    the start; the trunk (and its skip matrices) is the seed's."""
    c = replace(eigen_config.Config(), k=2, even=6)
    model = eigen_config.build_network(c, np.random.default_rng(0))
    x = unit_vectors(20, 50, np.random.default_rng(1))
    even_part = (model(x) + model(-x)) / 2
    assert even_part.shape == (2, 50) and np.ptp(even_part, axis=1).min() > 1e-6
    assert eigen_config.skip_weights(model).shape == (3, 40, 40)
    branch = model[0].layers[1]
    V = branch.weight
    assert np.allclose(branch(x), (V @ x) ** 2)
    g = tv.gradient(lambda m: tv.ops.sum(m(x)), branch)  # d/dV Σ (Vx)² = 2 (Vx) xᵀ
    assert np.allclose(g.weight, 2 * (V @ x) @ x.T)


def test_k_auto_is_the_smallest_k_that_splits_no_degree1_pair():
    spectrum = Spectrum.of(*make_operators(20, 1.0, seed=0))
    # seed 0, by real part: 1.788, 1.765, then the pair 1.735 ± 0.406i
    assert eigen_config.resolve_k(replace(eigen_config.Config(), k=0), spectrum) == 4
    assert eigen_config.resolve_k(replace(eigen_config.Config(), k=2), spectrum) == 2
