"""Slow oscillations: the lag-1 autocorrelation."""

import numpy as np
import pytest

from tinyvec.analysis.oscillation import lag1_autocorrelation


def test_lag1_autocorrelation_sees_an_alternation():
    assert lag1_autocorrelation(np.tile([1.0, 2.0], 50)) == pytest.approx(-0.99)
    assert lag1_autocorrelation(np.linspace(0, 1, 100)) > 0.9
