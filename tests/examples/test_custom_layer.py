"""examples/custom_layer.py: its layers' gradients against finite differences, and training."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import tinyvec as tv

PATH = Path(__file__).parents[2] / "examples" / "custom_layer.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("custom_layer", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomised(example, seed):
    """The example's model with every parameter random (Scale starts as the identity)."""
    model = example.make_model(seed=seed)
    rng = np.random.default_rng(seed)
    for _, layer, name in tv.trainables(model):
        setattr(layer, name, rng.standard_normal(getattr(layer, name).shape))
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_against_finite_differences(example, seed, numgrad):
    model = randomised(example, seed)
    x, y = example.make_data(n_samples=5, seed=seed)
    grads = tv.gradient(lambda m: tv.mse(m(x), y), model)

    def close(got, fd, what):  # central differences carry ~1e-10 relative rounding noise
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max(), err_msg=what)

    for path, layer, name in tv.trainables(model):
        fd = numgrad(lambda _: float(tv.mse(model(x), y)), getattr(layer, name))
        close(eval(path.replace("model", "grads", 1), {"grads": grads}), fd, path)
    # and with respect to the input, through Scale and Conv1D
    gx = tv.gradient(lambda a: tv.mse(model(a), y), x)
    close(gx, numgrad(lambda a: float(tv.mse(model(a), y)), x.copy()), "input")


@pytest.mark.parametrize("seed", [0, 1])
def test_gradcheck_passes_on_the_example(example, seed):
    model = randomised(example, seed)
    x, y = example.make_data(n_samples=5, seed=seed)
    report = tv.gradcheck(lambda m, x: tv.mse(m(x), y), model, x)
    n = sum(getattr(layer, name).size for _, layer, name in tv.trainables(model))
    assert report.ok and report.checked == n + x.size


def test_the_script_runs(example, capsys):
    example.main(seed=0, steps=2)
    out = capsys.readouterr().out
    assert "gradients match" in out and "step    1" in out


def test_layers_compute_their_formulas(example):
    x = np.arange(12.0).reshape(4, 3)
    s = example.Scale(4)
    s.scale, s.bias = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 0.0, -1.0])
    np.testing.assert_array_equal(s(x), s.scale[:, None] * x + s.bias[:, None])
    c = example.Conv1D(2, rng=0)
    c.weight, c.bias = np.array([[1.0, -1.0]]), np.array([0.5])
    np.testing.assert_array_equal(c(x), x[:-1] - x[1:] + 0.5)  # y_i = x_i - x_{i+1} + b


def test_training_reduces_the_loss(example):
    history = example.main(seed=0, steps=300, verbose=False)
    assert len(history) == 300 and history[-1] < 0.05 * history[0]
    assert example.main(seed=0, steps=20, verbose=False) == history[:20]  # same seed, same run


def test_custom_layers_save_and_print(example, tmp_path):
    model = randomised(example, 0)
    tv.save(tmp_path / "m.npz", model)
    other = example.make_model(seed=5)
    tv.load(tmp_path / "m.npz", other)
    np.testing.assert_array_equal(other[0].scale, model[0].scale)
    assert "Conv1D(3),                            # 4 parameters" in str(model)
