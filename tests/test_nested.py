"""Trees as deep as their model: printed, pickled and copied without recursion
(`tinyvec.nested`), and the same as Python's own at ordinary depths."""

import copy
import pickle

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.display import tree_text
from tinyvec.nested import Nested, nested_repr


def plain(tree):
    """The same tree of Python's own dicts and tuples (recursive: ordinary depths only)."""
    if isinstance(tree, dict):
        return {k: plain(v) for k, v in tree.items()}
    if type(tree) is tuple:
        return tuple(plain(v) for v in tree)
    return tree


values = st.none() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3)
trees = st.recursive(
    values,
    lambda inner: (
        st.dictionaries(st.text(max_size=3), inner, max_size=3).map(Nested)
        | st.lists(inner, max_size=3).map(tuple)
    ),
    max_leaves=20,
)


@given(trees)
def test_a_tree_prints_pickles_and_copies_as_python_does(tree):
    assert nested_repr(tree) == repr(plain(tree))
    for again in (pickle.loads(pickle.dumps(tree)), copy.deepcopy(tree)):
        assert plain(again) == plain(tree)
        assert nested_repr(again) == nested_repr(tree)


def test_a_branch_met_twice_is_still_one_branch_after_a_copy():
    shared = Nested(weight=np.ones(2))
    tree = Nested(a=shared, b=(shared,))
    again = copy.deepcopy(tree)
    assert again["a"] is again["b"][0] and again["a"] is not shared
    top = copy.copy(tree)  # (shallow: the top dict only)
    assert top is not tree and top["a"] is shared


def test_the_gradients_and_state_of_a_model_thousands_deep_print_save_and_copy():
    """Python's repr, pickle and deepcopy of nested dicts recurse and fail here
    (RecursionError) although the model itself trains: its Tree did the same."""
    model = tv.Dense(2, 2, rng=0)
    for _ in range(3000):
        model = tv.Chain(model)
    x = np.ones((2, 3))
    grads = tv.gradient(lambda m: tv.mse(m(x), np.zeros((2, 3))), model)
    state = tv.setup(tv.Adam(), model)
    tv.update(state, model, grads)
    (path, _, _), *_ = tv.trainables(model)
    for again in (pickle.loads(pickle.dumps(grads)), copy.deepcopy(grads)):
        assert np.array_equal(again[path], grads[path]) and again[path] is not grads[path]
        assert type(again) is type(grads)
    assert repr(grads).count("'weight'") == 1 and str(grads) == repr(grads)
    assert tree_text(grads).count("weight") == 1
    for kept in (pickle.loads(pickle.dumps(state)), copy.deepcopy(state)):
        assert repr(kept.tree) == repr(state.tree)
        ours, theirs = kept.tree[path].state, state.tree[path].state  # (Adam's moments, t)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
