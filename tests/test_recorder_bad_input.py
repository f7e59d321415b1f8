"""The Recorder with bad arguments, failing writes and interruptions: one clear error at
construction, the training error never hidden, and no file with a partial step."""

import numpy as np
import pytest

import tinyvec as tv


def model():
    return tv.Chain(tv.Dense(3, 5, tv.tanh, rng=0), tv.Dense(5, 2, rng=2))


def batches(n, rng=0):
    g = np.random.default_rng(rng)
    return [(g.standard_normal((3, 4)), g.standard_normal((2, 4))) for _ in range(n)]


def mse_loss(m, x, y):
    return tv.mse(m(x), y)


def train_by_hand(m, rec, n):
    """n steps recorded as `tv.train` records them, without its `close` at the end."""
    state = tv.setup(tv.Descent(0.1), m)
    for step, (x, y) in enumerate(batches(n), start=1):
        tv.update(state, m, tv.gradient(lambda m, x=x, y=y: mse_loss(m, x, y), m))
        rec.record(m, step)


@pytest.mark.parametrize("every", [0, -3, 2.5, True])
def test_every_must_be_a_positive_whole_number(tmp_path, every):
    with pytest.raises(ValueError, match="every must be a"):
        tv.Recorder(every=every, path=tmp_path / "r.npz")


def test_a_path_in_a_missing_folder_is_refused_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tv.Recorder(every=1, path=tmp_path / "nowhere" / "r.npz")


def test_a_folder_as_path_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="name a file"):
        tv.Recorder(every=1, path=tmp_path)


def test_the_path_is_written_exactly_as_named(tmp_path):
    m = model()
    rec = tv.Recorder(every=1, path=str(tmp_path / "runfile"))
    tv.train(mse_loss, m, batches(2), tv.setup(tv.Descent(0.1), m), recorder=rec, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runfile"]
    with np.load(tmp_path / "runfile") as f:
        assert "step2/layer2/delta" in f.files


def test_a_write_error_never_hides_the_training_error(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    m = model()
    rec = tv.Recorder(every=1, path=folder / "r.npz")
    data = [*batches(2), (np.full((3, 4), np.nan), np.zeros((2, 4)))]
    folder.rmdir()  # the write at the end will fail
    with pytest.raises(tv.NonFiniteLoss) as e, pytest.warns(UserWarning, match="could not write"):
        tv.train(mse_loss, m, data, tv.setup(tv.Descent(0.1), m), recorder=rec, progress=False)
    assert any("could not write" in note for note in e.value.__notes__)


def test_a_write_error_alone_is_raised(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    m = model()
    rec = tv.Recorder(every=1, path=folder / "r.npz")
    folder.rmdir()
    with pytest.raises(FileNotFoundError):
        tv.train(
            mse_loss, m, batches(2), tv.setup(tv.Descent(0.1), m), recorder=rec, progress=False
        )


def test_an_interrupted_step_is_not_recorded_in_part(tmp_path):
    m = model()
    rec = tv.Recorder(every=1, path=tmp_path / "r.npz")
    train_by_hand(m, rec, 2)
    rows, snapshots = len(rec.rows), dict(rec.snapshots)
    # Ctrl-C while the second layer of step 3 is being summarised
    layer2 = tv.dense_layers(m)[1]
    layer2.step = {"weight": "not an array"}
    with pytest.raises(TypeError):
        rec.record(m, 3)
    assert len(rec.rows) == rows and rec.snapshots == snapshots
    rec.close()
    with np.load(tmp_path / "r.npz") as f:
        steps = {k.split("/")[0] for k in f.files}
        assert steps == {"step1", "step2"} and len(f.files) == 2 * 2 * 3


def test_a_kill_while_closing_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "r.npz"

    def interrupted(f, **arrays):
        f.write(b"part of an archive")
        raise KeyboardInterrupt

    m = model()
    rec = tv.Recorder(every=1, path=path)
    train_by_hand(m, rec, 1)
    path.write_bytes(b"previous run")  # an old file
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rec.close()
    assert path.read_bytes() == b"previous run" and [p.name for p in tmp_path.iterdir()] == [
        "r.npz"
    ]


def test_column_names_what_exists():
    m = model()
    rec = tv.Recorder()
    tv.train(mse_loss, m, batches(2), tv.setup(tv.Descent(0.1), m), recorder=rec, progress=False)
    assert rec.column("delta_norm", 2).shape == (2,)
    with pytest.raises(ValueError, match=r"no layer 3; recorded layers: \[1, 2\]"):
        rec.column("delta_norm", 3)
    with pytest.raises(ValueError, match="no summary 'delta'; have: step, layer"):
        rec.column("delta", 1)


# --- one run per Recorder ------------------------------------------------------------------------
def test_a_recorder_reused_for_a_second_run_is_refused_before_any_work(tmp_path):
    """A second `train` with the same Recorder once overwrote the first run's snapshots step by
    step in one file: now it is refused before training, the first run's file untouched."""
    path = tmp_path / "r.npz"
    m = model()
    rec = tv.Recorder(every=1, path=path)
    tv.train(mse_loss, m, batches(2), tv.setup(tv.Descent(0.1), m), recorder=rec, progress=False)
    first, weight = path.read_bytes(), m[0].weight.copy()
    with pytest.raises(ValueError, match=r"recorded a run already.*new tv\.Recorder"):
        tv.train(mse_loss, m, batches(1), tv.setup(tv.Descent(0.1), m), recorder=rec)
    assert path.read_bytes() == first and (m[0].weight == weight).all()
    with pytest.raises(ValueError, match="run is over"):
        rec.record(m, 3)


def test_steps_that_start_again_are_refused(tmp_path):
    m = model()
    rec = tv.Recorder(every=1, path=tmp_path / "r.npz")
    train_by_hand(m, rec, 2)
    with pytest.raises(ValueError, match="step 1 after step 2"):
        rec.record(m, 1)
    assert {r["step"] for r in rec.rows} == {1, 2}
