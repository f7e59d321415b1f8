"""The plan of a model: what it lists, when it is remade, and that its paths index the trees."""

import copy
import pickle

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.fast.plan import Plan, plan_of
from tinyvec.layers.base import Tree, match, mirror
from tinyvec.seam import CACHE


def residual(rng=0):
    shared = tv.Dense(3, 3, tv.tanh, rng=rng + 1)
    return tv.Chain(
        tv.Dense(2, 3, rng=rng),
        tv.SkipConnection(shared, tv.add),
        tv.Parallel(tv.add, shared, tv.Dense(3, 3, bias=False, rng=rng + 2)),
        tv.Dense(3, 1, rng=rng + 3),
    )


def test_plan_lists_every_layer_and_each_parameter_once():
    model = residual()
    plan = Plan(model)
    assert [node.path for node in plan.nodes] == [
        "model",
        "model.layers[0]",
        "model.layers[1]",
        "model.layers[1].layer",
        "model.layers[2]",
        "model.layers[2].layers[0]",
        "model.layers[2].layers[1]",
        "model.layers[3]",
    ]
    assert [p for p, _, _ in plan.trainables] == [  # the shared layer once, no absent bias
        "model.layers[0].weight",
        "model.layers[0].bias",
        "model.layers[1].layer.weight",
        "model.layers[1].layer.bias",
        "model.layers[2].layers[1].weight",
        "model.layers[3].weight",
        "model.layers[3].bias",
    ]
    assert [p for p, _, _ in tv.trainables(model)] == [p for p, _, _ in plan.trainables]


def test_a_trainables_path_indexes_the_gradient_and_state_trees():
    model = residual()
    x, y = np.ones((2, 4)), np.zeros((1, 4))
    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)
    state = tv.setup(tv.Momentum(0.1), model)
    for path, layer, name in tv.trainables(model):
        assert grads[path].shape == getattr(layer, name).shape
        assert state.tree[path].state.shape == getattr(layer, name).shape
    assert grads["model.layers[1].layer.weight"] is grads.layers[1].layer.weight
    with pytest.raises(KeyError, match=r"nothing at model.layers\[7\]"):
        grads["model.layers[7].weight"]
    with pytest.raises(KeyError):
        grads["weights"]


def test_the_plan_is_kept_and_remade_when_the_structure_changes():
    model = residual()
    plan = plan_of(model)
    assert plan_of(model) is plan and getattr(model, CACHE) is plan
    model[0].weight = model[0].weight * 2  # a new array: what every update does
    assert plan.valid(model)
    model[3].bias = None  # a parameter removed
    assert not plan.valid(model)
    assert [p for p, _, _ in tv.trainables(model)][-1] == "model.layers[3].weight"
    plan = plan_of(model)
    model.layers = model.layers[:2]  # a container's children replaced
    assert not plan.valid(model) and len(plan_of(model).trainables) == 4


def test_a_list_of_children_changed_in_place_is_seen():
    class Bag(tv.Layer):
        children = ("items",)

        def __init__(self, *items):
            self.items = list(items)

        def __call__(self, x):
            return sum(item(x) for item in self.items)

    bag = Bag(tv.Dense(2, 2, rng=0))
    plan = plan_of(bag)
    bag.items.append(tv.Dense(2, 2, rng=1))
    assert not plan.valid(bag) and len(plan_of(bag).trainables) == 4
    bag.items[1] = tv.Dense(2, 2, bias=False, rng=2)
    assert len(plan_of(bag).trainables) == 3


def test_a_model_containing_itself_is_refused():
    chain = tv.Chain(tv.Dense(2, 2))
    chain.layers = (chain.layers[0], chain)
    with pytest.raises(ValueError, match="contains itself"):
        Plan(chain)


def test_a_deep_model_needs_no_recursion():
    model = tv.Dense(2, 2, rng=0)
    for _ in range(3000):  # deeper than Python's recursion limit
        model = tv.Chain(model)
    assert len(Plan(model).trainables) == 2


def test_copies_and_pickles_of_a_model_get_their_own_plan():
    model = residual()
    plan_of(model)
    copies = (copy.deepcopy(model), tv.fmap(lambda a: a, model), pickle.loads(pickle.dumps(model)))
    for other in copies:
        assert plan_of(other).valid(other) and plan_of(other).model is other
        assert plan_of(other).trainables[0][1] is other[0]
    assert CACHE not in vars(tv.fmap(lambda a: a, model))


def test_zip_refuses_a_tree_of_another_shape():
    model = residual()
    plan = Plan(model)
    good = mirror(plan.nodes, lambda layer, name: name)
    assert [e[3] for e in match(plan.nodes, (good,), ("gradients",))] == [
        n for _, _, n in plan.trainables
    ]
    bad = Tree(good)
    bad["layers"] = good.layers[:2]
    with pytest.raises(ValueError, match=r"gradients do not match the model at model.layers"):
        match(plan.nodes, (bad,), ("gradients",))
