"""A model edited between steps: the fast road's caches (the plan, the written Chain programs,
the written update, a compiled step) must never answer for a model that is no longer there.

Hypothesis trains a random model on the fast road and edits it between steps, as a user at a
prompt might: parameter arrays replaced by wider ones deep inside a branch (consistently, so
the model still works: the same layer objects, new arrays), a branch swapped, an activation
replaced, a bias removed, a layer appended, a sub-layer made float32 (`tv.f32`) or its arrays
cast in place. After each edit the next steps must be those of a fresh copy of the edited
model trained on the reference road (`tv.fast.off()`), bit for bit: loss, gradients,
parameters, optimiser state and every record.
"""

import copy
import itertools
import warnings

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from nets import HOLDS, RULES, SIGMAS, architectures, build, changed, hold, records, state_bytes

import tinyvec as tv
from tinyvec.backend import to_numpy


def loss(m, x, y):
    return tv.mse(m(x), y)


def model_from(blocks, seed):
    """A random body (`nets.architectures`) between a first layer and a head, behind a residual
    branch that always holds two Dense layers in a row (something to widen deep inside)."""
    rng = np.random.default_rng(seed)
    branch = tv.Chain(tv.Dense(4, 3, tv.tanh, rng=seed + 1), tv.Dense(3, 4, rng=seed + 2))
    body, features = build(blocks, 4, rng)
    return tv.Chain(
        tv.Dense(3, 4, tv.tanh, rng=seed),
        tv.SkipConnection(branch, tv.add),
        body,
        tv.Dense(features, 2, rng=seed + 3),
    )


# --- the edits: each changes the model in place, and the model still works ----------------------
def places(model, kind):
    """(parent, attribute, index or None, layer) for every layer of ``kind`` in ``model``."""
    out = []
    for node in tv.layers.base.nodes(model):
        for attr, kids, many in node.slots:
            value = getattr(node.layer, attr)
            for j in range(len(kids)):
                layer = value[j] if many else value
                if isinstance(layer, kind):
                    out.append((node.layer, attr, j if many else None, layer))
    return out


def put(parent, attr, index, layer):
    if index is None:
        setattr(parent, attr, layer)
    else:
        items = list(getattr(parent, attr))
        items[index] = layer
        setattr(parent, attr, tuple(items))


def widenable(model):
    """(producer, consumer, column): a Dense whose outputs a Dense consumer reads from its input
    column ``column`` on: the next Dense in a Chain (column 0), or the next layer after a
    SkipConnection or Parallel that stacks the producer's outputs first (``vcat``)."""
    out = []
    for node in tv.layers.base.nodes(model):
        if not isinstance(node.layer, tv.Chain):
            continue
        for a, b in itertools.pairwise(node.layer.layers):
            if type(b) is not tv.Dense:
                continue
            if type(a) is tv.Dense:
                out.append((a, b, 0))
            elif type(a) is tv.SkipConnection and a.connection is tv.vcat:
                if type(a.layer) is tv.Dense:
                    out.append((a.layer, b, 0))
            elif type(a) is tv.Parallel and a.connection is tv.vcat:
                if type(a.layers[0]) is tv.Dense:
                    out.append((a.layers[0], b, 0))
    return out


def widen(model, r):
    """A Dense layer's outputs grow, and its consumer's inputs with them, by new arrays in the
    same layer objects (the producer's rows, the consumer's columns): the hidden width inside a
    branch, or the rows a ``vcat`` stacks."""
    producer, consumer, column = r.choice(widenable(model))
    extra = r.randint(1, 3)
    g = np.random.default_rng(r.randint(0, 1 << 30))
    W = producer.weight
    producer.weight = np.concatenate([W, g.standard_normal((extra, W.shape[1]))]).astype(W.dtype)
    if producer.bias is not None:
        producer.bias = np.concatenate([producer.bias, np.zeros(extra, producer.bias.dtype)])
    V = consumer.weight
    at = column + W.shape[0]  # after the producer's old outputs
    new = g.standard_normal((V.shape[0], extra))
    consumer.weight = np.concatenate([V[:, :at], new, V[:, at:]], 1).astype(V.dtype)


def swap_branch(model, r):
    """A SkipConnection's branch replaced by a new Dense of its shape, or a Parallel's two
    branches of one output size exchanged."""
    skips = [s for *_, s in places(model, tv.SkipConnection) if type(s.layer) is tv.Dense]
    pars = [p for *_, p in places(model, tv.Parallel) if p.connection is tv.add]
    kind = r.choice(["residual"] + ["skip"] * bool(skips) + ["parallel"] * bool(pars))
    if kind == "parallel":
        p = r.choice(pars)
        p.layers = tuple(reversed(p.layers))
    elif kind == "skip":
        s = r.choice(skips)
        out, features = s.layer.weight.shape
        s.layer = tv.Dense(features, out, r.choice(SIGMAS), rng=r.randint(0, 1 << 30))
    else:  # the residual branch: a new Chain of two Dense layers, 4 => k => 4
        k, seed = r.randint(1, 5), r.randint(0, 1 << 30)
        new = tv.Chain(tv.Dense(4, k, r.choice(SIGMAS), rng=seed), tv.Dense(k, 4, rng=seed + 1))
        model.layers[1].layer = new


def replace_activation(model, r):
    r.choice(tv.dense_layers(model)).sigma = r.choice(SIGMAS)


def remove_bias(model, r):
    with_bias = [d for d in tv.dense_layers(model) if d.bias is not None]
    if with_bias:
        r.choice(with_bias).bias = None


def append_layer(model, r):
    """A Dense appended to the model, or to the residual branch's Chain."""
    chain = model if r.random() < 0.5 else model.layers[1].layer
    n = chain.layers[-1].weight.shape[0]
    chain.layers = (*chain.layers, tv.Dense(n, n, r.choice(SIGMAS), rng=r.randint(0, 1 << 30)))


def to_f32(model, r):
    """A Dense sub-layer made float32: replaced by `tv.f32` of it, or its arrays cast in place."""
    parent, attr, index, dense = r.choice(places(model, tv.Dense))
    if r.random() < 0.5:
        put(parent, attr, index, tv.f32(dense))
    else:
        dense.weight = dense.weight.astype(np.float32)
        if dense.bias is not None:
            dense.bias = dense.bias.astype(np.float32)


EDITS = [widen, swap_branch, replace_activation, remove_bias, append_layer, to_f32]


# --- a step on each road --------------------------------------------------------------------------
def shapes(model):
    return [(p, getattr(layer, n).shape) for p, layer, n in tv.trainables(model)]


def fast_step(road, model, state, step, x, y):
    """(loss, gradients or None) of one step on the fast road (kept in ``fast_step.last``)."""
    if road == "update":
        value, grads = tv.withgradient(lambda m: loss(m, x, y), model)
        tv.update(state, model, grads)
        fast_step.last = value, grads
    else:
        fast_step.last = step(x, y), None
    return fast_step.last


def reference_step(model, state, x, y):
    """(loss, gradients) of one step on the reference road (kept in ``reference_step.last``)."""
    with tv.fast.off():
        value, grads = tv.withgradient(lambda m: loss(m, x, y), model)
        tv.update(state, model, grads)
    reference_step.last = value, grads
    return value, grads


def refused(take_step):
    """None when the step is taken, else the kind of refusal (NaN or ±inf on the way)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (overflow on the way to a refusal)
        try:
            take_step()
        except (tv.NonFiniteStep, tv.NonFiniteLoss, FloatingPointError) as e:
            return type(e).__name__
    return None


def grads_bytes(grads, model):
    return [
        None if grads[p] is None else to_numpy(grads[p]).tobytes()
        for p, _, _ in tv.trainables(model)
    ]


@given(
    blocks=architectures(),
    seed=st.integers(0, 1000),
    rule=st.sampled_from(sorted(RULES)),
    road=st.sampled_from(["update", "compiled", "compiled mse"]),
    edits=st.lists(st.sampled_from(EDITS), min_size=1, max_size=4),
    r=st.randoms(use_true_random=False),
    what=st.sampled_from(HOLDS),
)
def test_after_any_edit_the_fast_road_steps_as_a_fresh_model_on_the_reference_road(
    blocks, seed, rule, road, edits, r, what
):
    """``what``: what a user keeps of every step, which no later step may write into."""
    g = np.random.default_rng(seed)
    x, y = g.standard_normal((3, 5)), g.standard_normal((2, 5))
    model = model_from(blocks, seed)
    state = tv.setup(RULES[rule](), model)

    def compiled(state):
        return tv.compile(tv.mse if road == "compiled mse" else loss, model, state)

    step = compiled(state)
    held = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (float32 meets float64: converted)
        fast_step(road, model, state, step, x, y)  # the caches are made for the first model
        for edit in edits:
            before = shapes(model)
            edit(model, r)
            if shapes(model) != before:  # the optimiser state no longer fits: a new one
                state = tv.setup(RULES[rule](), model)
                step = compiled(state)
            fresh, fresh_state = copy.deepcopy(model), copy.deepcopy(state)
            for _ in range(2):
                # an edit can make training diverge (a widened layer's random entries, a
                # rule's large step): both roads must then refuse the step alike, and stop
                fast = refused(lambda: fast_step(road, model, state, step, x, y))
                reference = refused(lambda: reference_step(fresh, fresh_state, x, y))
                assert fast == reference, f"after {edit.__name__}: {fast} vs {reference}"
                if fast is not None:
                    return
                value, grads = fast_step.last
                want, want_grads = reference_step.last
                where = f"after {edit.__name__}"
                assert to_numpy(value).tobytes() == to_numpy(want).tobytes(), where
                if grads is not None:
                    assert grads_bytes(grads, model) == grads_bytes(want_grads, fresh), where
                assert records(model) == records(fresh), where
                assert state_bytes(state, model) == state_bytes(fresh_state, fresh), where
                hold(model, what, held)
                assert not changed(held), f"{where}: an array kept from a step was written into"
