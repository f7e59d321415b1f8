"""The δ-rule context and the step size α read from the optimiser."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy
from tinyvec.deltarules import LayerContext, step_size


def test_step_size():
    assert step_size(tv.Descent(0.3)) == 0.3
    assert step_size(tv.Momentum(0.3, 0.9)) == 0.3
    assert step_size(tv.Nesterov(0.1, 0.5)) == pytest.approx(0.15)
    assert step_size(tv.OptimiserChain(tv.WeightDecay(1e-3), tv.Descent(0.2))) == 0.2
    for rule in (tv.Adam(), tv.OptimiserChain(tv.Descent(), tv.Momentum())):
        with pytest.raises(ValueError, match="Adam"):
            step_size(rule)


@pytest.mark.parametrize("bias", [True, False])
def test_context_gram_includes_the_bias_as_an_input_of_one(xp, bias):
    O = np.random.default_rng(0).standard_normal((3, 4))
    ctx = LayerContext(W=None, O=xp.asarray(O), dO=None, alpha=0.1, bias=bias)
    Ob = np.concatenate([O, np.ones((1, 4))]) if bias else O
    assert np.allclose(to_numpy(ctx.gram), Ob.T @ Ob)
    assert np.allclose(to_numpy(ctx.norms2), (Ob**2).sum(0, keepdims=True))


def test_context_computes_the_gram_and_norms_once():
    O = np.random.default_rng(1).standard_normal((3, 4))
    ctx = LayerContext(W=None, O=O, dO=None, alpha=0.1, bias=True)
    assert ctx.gram is ctx.gram and ctx.norms2 is ctx.norms2
    assert np.allclose(np.diagonal(ctx.gram), ctx.norms2[0], rtol=1e-14)
    assert "alpha=0.1" in repr(ctx)
