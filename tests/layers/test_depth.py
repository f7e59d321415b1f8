"""A model 1,000 containers deep: gradient, update, a compiled step, printing, save/load,
tv.to / fmap, deepcopy and pickle, on both roads. Walks are iterative; the forward pass, which
is recursive by nature, makes room on the stack as it goes (`nested_call`) and gives the
recursion limit back."""

import contextlib
import copy
import pickle
import sys

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy

DEPTH = 1000


def deep(kind, depth=DEPTH):
    """Dense layers inside ``depth`` containers: Chains, or Chains and SkipConnections in turn,
    or with a Parallel every tenth level."""
    m = tv.Dense(2, 2, tv.tanh, rng=0)
    for i in range(depth):
        if kind == "skip" and i % 2:
            m = tv.SkipConnection(m, tv.add)
        elif kind == "parallel" and i % 10 == 5:
            m = tv.Parallel(tv.add, m, tv.Dense(2, 2, rng=i))
        else:
            m = tv.Chain(m)
    return m


def road(name):
    return tv.fast.off() if name == "reference" else contextlib.nullcontext()


X, Y = np.linspace(-1, 1, 6).reshape(2, 3), np.zeros((2, 3))


def parameters(m):
    return [to_numpy(getattr(layer, n)).tobytes() for _, layer, n in tv.trainables(m)]


# A model the fast road cannot write as one program (a value used by more than two layers, as
# in nested SkipConnections) runs layer by layer, and each nested Chain makes its own plan at
# its first call: quadratic in the depth once, so those run 300 deep on the fast road (still
# far past the recursion limit without `nested_call`) and 1,000 deep on the reference road.
CASES = [
    ("chain", "fast", DEPTH),
    ("chain", "compiled", DEPTH),
    ("chain", "reference", DEPTH),
    ("skip", "reference", DEPTH),
    ("parallel", "reference", DEPTH),
    ("skip", "fast", 300),
    ("skip", "compiled", 300),
    ("parallel", "fast", 300),
]


def train(m, name):
    state = tv.setup(tv.Adam(0.01), m)
    with road(name):
        if name == "compiled":
            step = tv.compile(tv.mse, m, state)
            return [to_numpy(step(X, Y)).tobytes() for _ in range(2)]
        losses = []
        for _ in range(2):
            loss, grads = tv.withgradient(lambda m: tv.mse(m(X), Y), m)
            tv.update(state, m, grads)
            losses.append(to_numpy(loss).tobytes())
        return losses


@pytest.mark.parametrize(("kind", "name", "depth"), CASES)
def test_a_model_a_thousand_containers_deep_trains(kind, name, depth):
    """On every road, with the reference road's numbers (a shallow copy of the arithmetic:
    the same Dense layers, the same containers, run at a depth Python allows by default)."""
    limit = sys.getrecursionlimit()
    m = deep(kind, depth)
    losses = train(m, name)
    assert sys.getrecursionlimit() == limit  # given back
    if name != "reference":
        want = deep(kind, depth)
        assert train(want, "reference") == losses and parameters(want) == parameters(m)


@pytest.mark.parametrize("kind", ["chain", "skip"])
def test_a_deep_model_prints_saves_loads_moves_copies_and_pickles(kind, tmp_path):
    m = deep(kind)
    text = str(m)
    assert text.count("Dense(2 => 2, tanh)") == 1 and "# Total: 2 arrays, 6 parameters" in text
    assert repr(m).count("Dense(2 => 2, tanh)") == 1
    tv.save(tmp_path / "m.npz", m)
    other = deep(kind)
    assert parameters(tv.load(tmp_path / "m.npz", other)) == parameters(m)
    with tv.fast.off():  # (what is tested here is the copying; see above for the roads)
        assert tv.f32(m)(X.astype(np.float32)).dtype == np.float32
        for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m)), tv.fmap(lambda a: a, m)):
            assert parameters(twin) == parameters(m)
            assert to_numpy(twin(X)).tobytes() == to_numpy(m(X)).tobytes()


def test_copies_and_pickles_keep_a_shared_layer_shared():
    shared = tv.Dense(2, 2, rng=0)
    m = tv.Chain(shared, tv.SkipConnection(tv.Chain(shared), tv.add))
    for twin in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert twin.layers[0] is twin.layers[1].layer.layers[0]
        assert twin.layers[0] is not shared
    both = copy.deepcopy([m, shared])
    assert both[0].layers[0] is both[1]  # deepcopy's memo is shared with the rest
    shallow = copy.copy(m)
    assert shallow.layers is m.layers


def test_the_recursion_limit_is_given_back_after_an_error_deep_inside():
    limit = sys.getrecursionlimit()
    m = deep("chain", 400)
    with pytest.raises(tv.DimensionMismatch):
        m(np.ones((3, 2)))
    with tv.fast.off(), pytest.raises(tv.DimensionMismatch):
        m(np.ones((3, 2)))
    assert sys.getrecursionlimit() == limit
