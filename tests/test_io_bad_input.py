"""tv.load and tv.save against hostile or broken files and faults: every refusal is one
ValueError naming the entry, read before any array data, and leaves the model (or the old
file) exactly as it was."""

import io
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinyvec as tv
from tinyvec.backend import to_numpy

PARAM = "model.layers[0].weight"  # shape (4, 3)


def model(rng=0, dtype=None):
    m = tv.Chain(tv.Dense(3, 4, tv.tanh, rng=rng), tv.Dense(4, 2, rng=rng + 1))
    return tv.f32(m) if dtype == "f32" else m


def parameters(m):
    return {p: to_numpy(getattr(layer, n)).copy() for p, layer, n in tv.trainables(m)}


def good_arrays():
    return {**parameters(model(9)), "__format__": np.array("tinyvec-params-1")}


def npy(array=None, header=None):
    """The bytes of a .npy entry: an array, or a bare header dict that promises data."""
    f = io.BytesIO()
    if header is None:
        np.lib.format.write_array(f, array, allow_pickle=True)
    else:
        np.lib.format.write_array_header_1_0(f, header)
    return f.getvalue()


def archive(path, entries):
    """A zip whose entries are given as raw bytes (``name.npy`` → bytes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, raw in entries.items():
            z.writestr(name, raw)
    return path


def entries_with(**replace):
    arrays = good_arrays()
    out = {f"{k}.npy": npy(v) for k, v in arrays.items()}
    out.update({f"{k}.npy": v for k, v in replace.items()})
    return out


def refused(path, m=None):
    """Load ``path`` into a model, check the model did not change, return the message."""
    m = model(5) if m is None else m
    before = parameters(m)
    with pytest.raises(ValueError) as e:
        tv.load(path, m)
    after = parameters(m)
    for p in before:
        assert after[p].tobytes() == before[p].tobytes() and after[p].dtype == before[p].dtype
    return str(e.value)


# --- load: headers are checked before any data is read ---------------------------------------
def test_a_header_declaring_8_terabytes_is_refused_by_name(tmp_path):
    huge = npy(header={"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    message = refused(archive(tmp_path / "8tb.npz", entries_with(**{PARAM: huge})))
    assert PARAM in message and "(1000000000000,)" in message


def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path):
    path = tmp_path / "bomb.npz"
    n = 12_500_000  # 100 MB of zeros, about 100 kB compressed
    header = npy(header={"descr": "<f8", "fortran_order": False, "shape": (n,)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, v in good_arrays().items():
            if k != PARAM:
                z.writestr(f"{k}.npy", npy(v))
        with z.open(f"{PARAM}.npy", "w", force_zip64=True) as f:
            f.write(header)
            zeros = bytes(1 << 20)
            for _ in range(n * 8 >> 20):
                f.write(zeros)
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        message = refused(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert PARAM in message and f"({n},)" in message
    assert peak < 10_000_000  # nothing near the 100 MB it would inflate to


def test_an_extra_entry_is_refused_before_its_data_is_read(tmp_path):
    huge = npy(header={"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    message = refused(archive(tmp_path / "x.npz", entries_with(**{"model.extra": huge})))
    assert "model.extra" in message


@pytest.mark.parametrize(
    "bad",
    [
        np.array([["a", "b", "c"]] * 4),  # str
        np.array([[b"a", b"b", b"c"]] * 4),  # bytes
        np.zeros((4, 3), dtype=[("x", "f8")]),  # structured
        np.zeros((4, 3), dtype=complex),  # the imaginary part would be dropped
        np.zeros((4, 3), dtype="m8[s]"),  # timedelta
        np.zeros((4, 3), dtype="M8[s]"),  # datetime
        np.zeros((4, 3), dtype=bool),
        np.full((4, 3), None, dtype=object),  # a pickle
    ],
    ids=["str", "bytes", "structured", "complex", "timedelta", "datetime", "bool", "object"],
)
def test_only_real_numbers_load(tmp_path, bad):
    message = refused(archive(tmp_path / "dt.npz", entries_with(**{PARAM: npy(bad)})))
    assert PARAM in message and "real numbers" in message


def test_integers_load_into_a_float_model(tmp_path):
    path = archive(tmp_path / "int.npz", entries_with(**{PARAM: npy(np.arange(12).reshape(4, 3))}))
    m = tv.load(path, model(5, "f32"))
    assert m[0].weight.dtype == np.float32 and m[0].weight[3, 2] == 11


def test_a_value_too_large_for_float32_is_refused_after_the_cast(tmp_path):
    w = np.zeros((4, 3))
    w[1, 2] = 1e39  # finite in float64, inf in float32
    path = archive(tmp_path / "big.npz", entries_with(**{PARAM: npy(w)}))
    assert PARAM in refused(path, model(5, "f32"))
    assert tv.load(path, model(5))[0].weight[1, 2] == 1e39  # fine for a float64 model


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(tmp_path, value):
    w = np.zeros((4, 3))
    w[0, 0] = value
    assert PARAM in refused(archive(tmp_path / "nf.npz", entries_with(**{PARAM: npy(w)})))


def test_a_npy_file_is_refused_with_a_clear_message(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros((4, 3)))
    assert ".npy file holds one array" in refused(tmp_path / "w.npy")


def test_a_truncated_entry_is_refused(tmp_path):
    raw = npy(np.zeros((4, 3)))[:-8]
    assert "truncated" in refused(archive(tmp_path / "t.npz", entries_with(**{PARAM: raw})))


def test_a_corrupt_header_is_refused(tmp_path):
    raw = b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',"
    assert PARAM in refused(archive(tmp_path / "h.npz", entries_with(**{PARAM: raw})))


def test_a_duplicate_entry_is_refused(tmp_path):
    path = archive(tmp_path / "d.npz", entries_with())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{PARAM}.npy", npy(np.ones((4, 3))))
    assert "appears twice" in refused(path)


def test_a_non_string_format_tag_is_refused(tmp_path):
    tag = npy(np.zeros(10**6))  # a large tag is not read either
    message = refused(archive(tmp_path / "tag.npz", entries_with(__format__=tag)))
    assert "not a tinyvec parameter file" in message


def test_a_missing_file_is_a_value_error_naming_it(tmp_path):
    assert "nothere.npz" in refused(tmp_path / "nothere.npz")


def _saved_bytes(compressed):
    m = model(9)
    f = io.BytesIO()
    arrays = {p: to_numpy(getattr(la, n)) for p, la, n in tv.trainables(m)}
    (np.savez_compressed if compressed else np.savez)(
        f, **arrays, __format__=np.array("tinyvec-params-1")
    )
    return f.getvalue()


GOOD = {False: _saved_bytes(False), True: _saved_bytes(True)}


@given(
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=20),
    st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_a_corrupted_archive_loads_or_is_one_value_error(tmp_path_factory, compressed, flips, cut):
    raw = bytearray(GOOD[compressed])
    for i, byte in flips:
        raw[i % len(raw)] = byte
    if cut is not None:
        raw = raw[: cut % len(raw)]
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    path.write_bytes(bytes(raw))
    m = model(5)
    before = parameters(m)
    try:
        tv.load(path, m)  # a flip in, say, a timestamp changes nothing that matters
    except ValueError:
        after = parameters(m)
        assert all(after[p].tobytes() == before[p].tobytes() for p in before)


# --- save: permissions, symlinks, faults ------------------------------------------------------
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_save_respects_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        tv.save(tmp_path / "m.npz", model())
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == mode


def test_save_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "m.npz"
    tv.save(path, model(0))
    path.chmod(0o640)
    tv.save(path, model(1))
    assert path.stat().st_mode & 0o777 == 0o640


def test_save_writes_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    real, link = tmp_path / "real" / "m.npz", tmp_path / "m.npz"
    tv.save(real, model(0))
    link.symlink_to(real)
    tv.save(link, model(1))
    assert link.is_symlink()
    loaded = parameters(tv.load(real, model(2)))
    for p, a in parameters(model(1)).items():
        np.testing.assert_array_equal(loaded[p], a)


def test_save_into_a_missing_folder_or_onto_a_folder_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tv.save(tmp_path / "nowhere" / "m.npz", model())
    with pytest.raises(IsADirectoryError, match="is a folder"):
        tv.save(tmp_path, model())
    assert os.listdir(tmp_path) == []


def test_save_refuses_a_non_finite_model_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.npz"
    tv.save(path, model(0))
    before = path.read_bytes()
    broken = model(1)
    broken[1].bias[0] = np.nan
    with pytest.raises(ValueError, match=r"model.layers\[1\].bias holds NaN"):
        tv.save(path, broken)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.parametrize(
    "fault", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "full"]
)
def test_a_fault_while_writing_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path, monkeypatch, fault
):
    path = tmp_path / "m.npz"
    tv.save(path, model(0))
    before = path.read_bytes()

    def failing_savez(f, **arrays):
        f.write(b"half an archive")
        raise fault

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(type(fault)):
        tv.save(path, model(1))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


CHILD = """
import os, sys, time
import numpy as np
import tinyvec as tv

savez = np.savez
def savez_then_wait(f, **arrays):  # written, not yet renamed: the kill lands here
    savez(f, **arrays)
    f.flush()
    print("written", flush=True)
    time.sleep(60)

np.savez = savez_then_wait
tv.save(sys.argv[1], tv.Chain(tv.Dense(300, 300, rng=1)))
"""


def test_a_kill_while_saving_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "m.npz"
    tv.save(path, model(0))
    before = path.read_bytes()
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path)], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline() == b"written\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_removes_temporaries_of_dead_processes_only(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = (
        tmp_path / f".m.npz.{dead.pid}-0a1b2c3d.tmp"
    )  # left by a kill where O_TMPFILE is missing
    alive = tmp_path / f".m.npz.{os.getppid()}-0a1b2c3d.tmp"  # another process still writing
    other = tmp_path / f".other.npz.{dead.pid}-0a1b2c3d.tmp"  # another file's: not ours to remove
    for p in (stale, alive, other):
        p.write_bytes(b"partial")
    tv.save(tmp_path / "m.npz", model())
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", alive.name, other.name])


def test_threads_saving_the_same_file_leave_one_whole_file(tmp_path):
    import concurrent.futures

    path = tmp_path / "m.npz"
    models = [model(k) for k in range(8)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        list(ex.map(lambda m: tv.save(path, m), models * 4))
    assert os.listdir(tmp_path) == ["m.npz"]
    loaded = parameters(tv.load(path, model(20)))
    assert any(all(np.array_equal(loaded[p], a) for p, a in parameters(m).items()) for m in models)


@pytest.mark.parametrize(
    "thing",
    [lambda m: tv.setup(tv.Adam(0.1), m), lambda m: m[0].weight, lambda m: 3],
    ids=["optimiser-state", "array", "number"],
)
def test_save_and_load_of_something_without_parameters_are_refused(thing, tmp_path):
    """Found by the audit: tv.save(path, state) wrote a file holding no arrays, and
    tv.load(path, state) read nothing, both silently: a resumed run started Adam afresh. The
    same for an array or a number."""
    m = tv.Chain(tv.Dense(2, 3, rng=0))
    with pytest.raises(TypeError, match=r"tv\.save takes a model, and \w+ holds no parameters"):
        tv.save(tmp_path / "x.npz", thing(m))
    assert not (tmp_path / "x.npz").exists()
    tv.save(tmp_path / "m.npz", m)
    with pytest.raises(TypeError, match=r"tv\.load takes a model, and \w+ holds no parameters"):
        tv.load(tmp_path / "m.npz", thing(m))
