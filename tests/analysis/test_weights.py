"""Statistics of a stack of weight matrices."""

import numpy as np
import pytest

from tinyvec.analysis.weights import weight_stats


def test_weight_stats():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(10, 1))
    W = np.stack([u @ u.T, u @ u.T, 2 * u @ u.T])
    s = weight_stats(W)
    assert s["erank_r"] == pytest.approx(1.0, abs=1e-6)
    assert s["diff_rg"] == 0.0
    # ‖W‖ = √((1 + 1 + 4)/3)‖uuᵀ‖ = √2 ‖uuᵀ‖, ‖W_g − W_b‖ = ‖uuᵀ‖
    assert s["diff_gb"] == pytest.approx(1 / np.sqrt(2))
    independent = weight_stats(rng.normal(size=(3, 200, 200)))
    assert independent["diff_rb"] == pytest.approx(np.sqrt(2), rel=0.02)
