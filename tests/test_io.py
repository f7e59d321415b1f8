"""save / load: round trips, and refused files that leave the model as it was."""

import zipfile

import array_api_strict
import numpy as np
import pytest

import tinyvec as tv
from tinyvec.backend import to_numpy


def model(rng=0):
    return tv.Chain(
        tv.Dense(3, 4, tv.tanh, rng=rng),
        tv.SkipConnection(tv.Dense(4, 4, rng=rng + 1), tv.add),
        tv.Dense(4, 2, bias=False, rng=rng + 2),
    )


def parameters(m):
    return {p: to_numpy(getattr(layer, n)).copy() for p, layer, n in tv.trainables(m)}


def assert_unchanged(m, before):
    after = parameters(m)
    assert after.keys() == before.keys()
    for p in before:
        assert after[p].tobytes() == before[p].tobytes(), p


@pytest.mark.parametrize("xp", [np, array_api_strict], ids=["numpy", "array_api_strict"])
def test_round_trip(tmp_path, xp):
    source, target = tv.to(xp, model(0)), tv.to(xp, model(10))
    path = tmp_path / "params.npz"
    tv.save(path, source)
    assert tv.load(path, target) is target
    assert_unchanged(target, parameters(source))
    for _, layer, name in tv.trainables(target):  # the target keeps its namespace
        assert type(getattr(layer, name)) is type(xp.asarray(np.zeros(1)))


def test_load_keeps_the_target_dtype(tmp_path):
    tv.save(tmp_path / "p.npz", model(0))
    target = tv.f32(model(1))
    tv.load(tmp_path / "p.npz", target)
    assert target[0].weight.dtype == np.float32
    np.testing.assert_allclose(target[0].weight, model(0)[0].weight, rtol=1e-7)


def test_file_has_no_pickles_and_names_parameter_paths(tmp_path):
    tv.save(tmp_path / "p.npz", model())
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        names = set(f.files)
        assert all(f[k].dtype != object for k in f.files)
    assert {"model.layers[0].weight", "model.layers[1].layer.bias"} <= names
    assert "model.layers[2].bias" not in names  # bias=False has no entry


def refused(tmp_path, arrays=None, raw=None):
    """Write a file, try to load it into a fresh model, check the model did not change and
    return the error message."""
    path = tmp_path / "bad.npz"
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.savez(path, **arrays)
    m = model(5)
    before = parameters(m)
    with pytest.raises(ValueError) as e:
        tv.load(path, m)
    assert_unchanged(m, before)
    return str(e.value)


def saved(tmp_path):
    tv.save(tmp_path / "good.npz", model())
    with np.load(tmp_path / "good.npz") as f:
        return {k: f[k] for k in f.files}


def test_refuses_a_file_that_is_not_a_zip(tmp_path):
    assert "not a readable" in refused(tmp_path, raw=b"hello, not a zip")


def test_refuses_an_archive_without_the_format_tag(tmp_path):
    arrays = saved(tmp_path)
    del arrays["__format__"]
    assert "not a tinyvec parameter file" in refused(tmp_path, arrays)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ValueError):
        tv.load(tmp_path / "other.zip", model())


def test_refuses_missing_extra_and_misshaped_parameters(tmp_path):
    arrays = saved(tmp_path)
    missing = {k: v for k, v in arrays.items() if k != "model.layers[1].layer.weight"}
    assert "model.layers[1].layer.weight" in refused(tmp_path, missing)
    extra = {**arrays, "model.layers[3].weight": np.ones((2, 2))}
    assert "model.layers[3].weight" in refused(tmp_path, extra)
    misshaped = {**arrays, "model.layers[0].bias": np.ones(5)}
    message = refused(tmp_path, misshaped)
    assert "model.layers[0].bias" in message and "(5,)" in message and "(4,)" in message


def test_refuses_nan(tmp_path):
    arrays = saved(tmp_path)
    arrays["model.layers[2].weight"][1, 1] = np.nan
    assert "model.layers[2].weight" in refused(tmp_path, arrays)


def test_save_replaces_an_old_file(tmp_path):
    path = tmp_path / "p.npz"
    tv.save(path, model(0))
    tv.save(path, model(1))
    target = model(2)
    tv.load(path, target)
    assert_unchanged(target, parameters(model(1)))
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary file left
