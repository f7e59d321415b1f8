"""The layer protocol: ``params`` and ``children`` are all that walking, gradients,
optimiser state, moving, saving and printing need."""

import numpy as np
import pytest

import tinyvec as tv
from tinyvec.layers.base import child_layers, nparams, walk


class Affine1(tv.Layer):
    """y = a·x + c with scalar parameters held as shape-(1,) arrays."""

    params = ("a", "c")

    def __init__(self, a=2.0, c=0.5):
        self.a, self.c = np.array([a]), np.array([c])

    def __call__(self, x):
        return self.a * x + self.c

    def __repr__(self):
        return "Affine1()"


class Pair(tv.Layer):
    """Two children: one single layer, one tuple of layers."""

    children = ("first", "rest")

    def __init__(self, first, *rest):
        self.first, self.rest = first, rest

    def __call__(self, x):
        for layer in (self.first, *self.rest):
            x = layer(x)
        return x


def model():
    return Pair(tv.Dense(2, 2, tv.tanh, rng=0), Affine1(), tv.Chain(tv.Dense(2, 1, rng=1)))


def test_walk_and_trainables_follow_params_and_children():
    m = model()
    assert [p for p, _ in walk(m)] == [
        "model",
        "model.first",
        "model.rest[0]",
        "model.rest[1]",
        "model.rest[1].layers[0]",
    ]
    assert [p for p, _, _ in tv.trainables(m)] == [
        "model.first.weight",
        "model.first.bias",
        "model.rest[0].a",
        "model.rest[0].c",
        "model.rest[1].layers[0].weight",
        "model.rest[1].layers[0].bias",
    ]
    assert [s for s, _ in child_layers(m)] == [".first", ".rest[0]", ".rest[1]"]


def test_custom_layer_gradient_and_update():
    m = model()
    x = np.array([[0.3, -0.1], [0.2, 0.4]])
    grads = tv.gradient(lambda mm: tv.ops.sum(mm(x)), m)
    h = m.first(x)
    w = m.rest[1][0].weight
    # L = Σ w (a h + c) + b: ∂L/∂a = Σ w h, ∂L/∂c = Σ_columns Σ w
    np.testing.assert_allclose(grads.rest[0].a, [np.sum(w @ h)], rtol=1e-14)
    np.testing.assert_allclose(grads.rest[0].c, [w.sum() * x.shape[1]], rtol=1e-14)
    assert isinstance(m.rest[0].a, np.ndarray)  # a plain array again after the gradient
    a = m.rest[0].a.copy()
    tv.update(tv.setup(tv.Descent(0.1), m), m, grads)
    np.testing.assert_allclose(m.rest[0].a, a - 0.1 * grads.rest[0].a)
    assert set(m.rest[0].step) == {"a", "c"}


def test_fmap_copies_and_keeps_sharing():
    d = tv.Dense(2, 2, rng=0)
    m = tv.Chain(d, d)
    m(np.ones((2, 1)))
    doubled = tv.fmap(lambda a: 2 * a, m)
    assert doubled[0] is doubled[1] and doubled[0] is not d
    np.testing.assert_array_equal(doubled[0].weight, 2 * d.weight)
    assert doubled[0].input is None and d.input is not None  # the copy forgets activations


def test_printing_a_custom_container_and_a_leaf():
    text = str(model())
    assert text.splitlines()[0] == "Pair("
    assert "Affine1(),                            # 2 parameters" in text
    assert text.endswith("# Total: 6 arrays, 11 parameters, 0.086 KiB.")
    assert nparams(model()) == (6, 11, 88)
    assert str(tv.Dense(3, 2)) == "Dense(3 => 2)                           # 8 parameters"


def test_base_layer_must_be_subclassed():
    with pytest.raises(NotImplementedError):
        tv.Layer()(np.ones(1))


def test_f32_of_a_fresh_model_frees_the_original_at_once():
    """`tv.f32(build())`: fmap leaves no plan on a model that had none (a model and its plan
    refer to each other, so the float64 arrays would wait for the cycle collector)."""
    import gc
    import weakref

    gc.disable()
    try:
        model = tv.Chain(tv.Dense(3, 4, rng=0), tv.Dense(4, 1, rng=1))
        first = weakref.ref(model[0])
        small = tv.f32(model)
        del model
        assert first() is None
        assert small[0].weight.dtype == np.float32
    finally:
        gc.enable()


# --- rich display in Jupyter / IPython (issue 23) ---------------------------------------------
class _Printer:  # IPython's pretty printer, as far as _repr_pretty_ uses it
    def __init__(self):
        self.out = ""

    def text(self, s):
        self.out += s


def pretty(obj):
    p = _Printer()
    obj._repr_pretty_(p, False)
    return p.out


def test_a_model_displays_its_tree_and_flags_nan_and_inf_parameters():
    m = tv.Chain(
        tv.Dense(2, 3, tv.tanh, rng=0),
        tv.SkipConnection(tv.Dense(3, 3, rng=1), tv.add),
        tv.Dense(3, 1, rng=2),
    )
    assert pretty(m) == str(m)  # all finite: exactly print(model)
    assert "every parameter is finite" in m._repr_html_()
    assert "Dense(2 =&gt; 3, tanh)" in m._repr_html_() and "25 parameters" in m._repr_html_()
    m[2].weight[0, 1] = np.nan
    m[1].layer.bias[:] = np.inf
    assert pretty(m).splitlines()[-2:] == [
        "! model.layers[1].layer.bias: 3 inf of 3",
        "! model.layers[2].weight: 1 NaN of 3",
    ]
    page = m._repr_html_()
    assert "2 parameter arrays hold NaN or inf" in page
    assert "<code>model.layers[2].weight</code>" in page and "1 NaN of 3" in page
    assert pretty(m[0]) == str(m[0])  # a leaf layer (Dense has its own __repr__)
    assert repr(m) == "Chain(Dense(2 => 3, tanh), SkipConnection(Dense(3 => 3), +), Dense(3 => 1))"


def test_a_gradient_tree_displays_shapes_norms_and_flags():
    m = tv.Chain(tv.Dense(2, 3, tv.tanh, rng=0), tv.Dense(3, 1, rng=1, bias=False))
    x, y = np.ones((2, 4)), np.zeros((1, 4))
    g = tv.gradient(lambda m: tv.mse(m(x), y), m)
    text = pretty(g).splitlines()
    assert text[:3] == ["Tree:", "  layers", "    [0]"]
    norm = float(np.linalg.norm(g.layers[0].weight))
    assert f"      weight: (3, 2) float64  ‖·‖ = {norm:.4g}" in text
    assert "      bias: None" in text  # the second layer has no bias
    assert "all finite" in g._repr_html_()
    g.layers[1].weight[0, 0] = np.nan
    assert pretty(g).splitlines()[-2].endswith("‖·‖ = nan  ! 1 NaN of 3")
    assert "1 non-finite" in g._repr_html_()
