"""Saving and loading parameters as ``.npz``: one array per parameter path, no pickles.

The file holds ``model.layers[0].weight``-style keys and a format tag. `load` reads the
archive's headers first (names, shapes, dtypes) and refuses, naming the entry, a file that is
not such an archive, whose paths or shapes differ from the model's, whose arrays are not real
numbers, or whose values do not fit the model's dtype; only then does it read the data, and
it changes nothing unless every check passed.

`save` writes atomically: the archive goes to a temporary file in the target's folder, which is
flushed to disk and renamed over the target, so a crash or a kill at any moment leaves either
the old file or the new one, and no half-written file.

>>> import tempfile, pathlib, numpy as np, tinyvec as tv
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
>>> tv.save(path, tv.Chain(tv.Dense(2, 1, rng=0)))
>>> m = tv.load(path, tv.Chain(tv.Dense(2, 1, rng=1)))
>>> bool(np.all(m[0].weight == tv.Chain(tv.Dense(2, 1, rng=0))[0].weight))
True
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import secrets
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .backend import device, namespace, to_numpy
from .engine.tensor import data
from .layers.base import trainables

FORMAT = "tinyvec-params-1"
_TAG = "__format__"
_NPY_MAGIC = b"\x93NUMPY"


# --- writing ----------------------------------------------------------------------------------
def save(path: str | os.PathLike[str], model: Any) -> None:
    """Write every parameter of ``model`` to ``path``.

    Atomic (a crash leaves the old file or the new one), through a symlink (the file it points
    to is replaced), with the permissions of an existing file or else those the umask gives.
    A model holding NaN or ±inf is refused, since `load` would refuse the file.
    """
    arrays: dict[str, Any] = {}
    for p, layer, name in _parameters(model, "save"):
        a = to_numpy(data(getattr(layer, name)))
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise ValueError(f"tv.save: {p} holds NaN or infinite values; nothing written")
        arrays[p] = a
    arrays[_TAG] = np.array(FORMAT)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _parameters(model: Any, verb: str) -> list[tuple[str, Any, str]]:
    """The parameters of a model: none is a mistake (an optimiser state, an array, a number),
    which would write an empty file, or read nothing, and say nothing."""
    found = trainables(model)
    if not found:
        raise TypeError(
            f"tv.{verb} takes a model, and {type(model).__name__} holds no parameters; an "
            "optimiser state or any other object pickles (pickle.dump(state, file)), an array "
            "saves with np.save"
        )
    return found


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk and rename it
    over ``path`` (its symlink target, if it is a symlink). Exactly ``path`` is written (no
    suffix added); on any error, KeyboardInterrupt included, ``path`` is untouched and the
    temporary file removed."""
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"{path} is a folder; name a file")
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None  # a new file: the umask decides, as for any file the user creates
    _remove_stale_temporaries(target)
    with _temporary(target) as (f, commit):
        write(f)
        f.flush()
        os.fsync(f.fileno())
        if mode is not None:
            os.fchmod(f.fileno(), mode)
        commit()
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(target: Path) -> Path:
    # the process id lets a later save tell a dead process's leftover from a live writer's;
    # the random part keeps two threads of one process apart
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[tuple[IO[bytes], Callable[[], None]]]:
    """A file in ``target``'s folder and a ``commit()`` that renames it to ``target``.

    On Linux the file is anonymous (O_TMPFILE) until ``commit``: a SIGKILL while writing
    leaves nothing behind. Elsewhere it is named after ``target`` and this process, and a
    later save into the same folder removes one whose process is gone."""
    temp = _temp_name(target)
    fd, named = None, False
    if hasattr(os, "O_TMPFILE"):
        with contextlib.suppress(OSError):  # the file system may not support it
            fd = os.open(target.parent, os.O_TMPFILE | os.O_RDWR, 0o666)
    if fd is None:
        fd, named = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), True

    def commit() -> None:
        nonlocal named
        if not named:  # give the anonymous file its temporary name, then rename it
            try:
                proc = os.open("/proc/self/fd", os.O_RDONLY)
                try:  # a dir_fd makes Python call linkat(AT_SYMLINK_FOLLOW), not link()
                    os.link(str(fd), temp, src_dir_fd=proc, follow_symlinks=True)
                finally:
                    os.close(proc)
                named = True
            except OSError:  # no /proc, say: copy the written bytes to a named file
                _copy_to(fd, temp)
                named = True
        os.replace(temp, target)
        named = False

    f = os.fdopen(fd, "wb")
    try:
        with f:
            yield f, commit
    except BaseException:
        if named:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise


def _copy_to(fd: int, temp: Path) -> None:
    """Copy the anonymous file ``fd`` to a new file ``temp``, with the same permissions."""
    os.lseek(fd, 0, os.SEEK_SET)
    with open(temp, "xb") as out:
        try:
            while chunk := os.read(fd, 1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), stat.S_IMODE(os.fstat(fd).st_mode))
        except BaseException:
            os.unlink(temp)
            raise


def _remove_stale_temporaries(target: Path) -> None:
    """Remove temporary files of ``target`` left by processes that no longer run."""
    for name in glob.glob(glob.escape(str(target.with_name(f".{target.name}."))) + "*.tmp"):
        # .NAME.PID-RANDOM.tmp
        pid = os.path.basename(name)[len(target.name) + 2 : -len(".tmp")].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(name)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


# --- reading ----------------------------------------------------------------------------------
def load(path: str | os.PathLike[str], model: Any) -> Any:
    """Read parameters saved by `save` into ``model`` (in place, keeping its namespace and
    dtype) and return it. Any refusal is a ValueError naming the entry; the model is then
    unchanged."""
    targets = _parameters(model, "load")
    wanted = {p: data(getattr(layer, name)) for p, layer, name in targets}
    try:
        with open(path, "rb") as raw:
            if raw.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise ValueError(
                    f"{path}: a .npy file holds one array; tv.load reads the .npz archives "
                    "that tv.save writes"
                )
        with zipfile.ZipFile(path) as z:
            entries = _headers(path, z, wanted)
            stored = {p: _read(path, z, info, header) for p, (info, header) in entries.items()}
    except (
        OSError, zipfile.BadZipFile, zlib.error, struct.error, EOFError, RuntimeError,
        NotImplementedError,
    ) as e:  # fmt: skip
        raise ValueError(f"{path}: not a readable tinyvec .npz file ({e})") from e
    new = {p: _fit(path, p, stored[p], have) for p, have in wanted.items()}
    for p, layer, name in targets:  # all checked: now change the model
        setattr(layer, name, new[p])
    return model


def _headers(path: Any, z: zipfile.ZipFile, wanted: dict[str, Any]) -> dict[str, Any]:
    """Check names, shapes and dtypes from the archive's headers, reading no array data."""
    names: dict[str, zipfile.ZipInfo] = {}
    for info in z.infolist():
        key = info.filename.removesuffix(".npy")
        if key == info.filename or key in names:
            what = "is not an array" if key == info.filename else "appears twice"
            raise ValueError(f"{path}: entry {info.filename!r} {what}; not a tinyvec archive")
        names[key] = info
    if _TAG not in names:
        raise ValueError(f"{path}: not a tinyvec parameter file (no {_TAG!r} = {FORMAT!r})")
    tag_header = _header(path, z, _TAG, names[_TAG])
    shape, dtype = tag_header[0], tag_header[2]
    if shape != () or dtype.kind != "U" or dtype.itemsize > 256:
        raise ValueError(f"{path}: not a tinyvec parameter file ({_TAG!r} is not a string)")
    if str(_read(path, z, names[_TAG], tag_header)) != FORMAT:
        raise ValueError(f"{path}: not a tinyvec parameter file (no {_TAG!r} = {FORMAT!r})")
    del names[_TAG]
    if missing := sorted(wanted.keys() - names.keys()):
        raise ValueError(f"{path}: the file has no parameter {missing[0]} (missing: {missing})")
    if extra := sorted(names.keys() - wanted.keys()):
        raise ValueError(f"{path}: the file has parameters the model lacks: {extra}")
    out = {}
    for p, have in wanted.items():
        header = _header(path, z, p, names[p])
        shape, _, dtype = header
        if shape != tuple(have.shape):
            raise ValueError(
                f"{path}: {p} has shape {shape} in the file, {tuple(have.shape)} in the model"
            )
        if dtype.kind not in "fiu" or dtype.hasobject:
            raise ValueError(
                f"{path}: {p} has dtype {dtype} in the file; only real numbers (float, int) load"
            )
        out[p] = (names[p], header)
    return out


def _parse_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an entry's first bytes, leaving ``f`` at the data."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(shape), fortran, dtype


def _header(path: Any, z: zipfile.ZipFile, key: str, info: zipfile.ZipInfo) -> Any:
    """(shape, fortran_order, dtype) of one entry, reading its header only."""
    with z.open(info) as f:
        try:
            return _parse_header(f)
        except Exception as e:  # NumPy's header parser raises several kinds on garbage
            raise ValueError(f"{path}: entry {key} has no valid array header ({e!r})") from e


def _read(path: Any, z: zipfile.ZipFile, info: zipfile.ZipInfo, header: Any) -> np.ndarray:
    """The data of one checked entry: exactly the bytes its header declares, no more (a
    zip bomb is never inflated beyond the model's own size)."""
    shape, fortran, dtype = header
    nbytes = math.prod(shape) * dtype.itemsize
    with z.open(info) as f:
        _parse_header(f)
        buf = f.read(nbytes)
    if len(buf) != nbytes:
        raise ValueError(f"{path}: entry {info.filename} is truncated")
    return np.frombuffer(buf, dtype).reshape(shape, order="F" if fortran else "C")


def _fit(path: Any, p: str, a: np.ndarray, have: Any) -> Any:
    """``a`` cast to the model's dtype and namespace, refused if a value is not finite or
    does not fit (1e39 becomes inf in float32: the check runs after the cast)."""
    xp = namespace(have)
    target = _numpy_dtype(have.dtype)
    if target.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            cast = a.astype(target)
        if not np.all(np.isfinite(cast)):
            bad = "NaN or infinite values" if not np.all(np.isfinite(a)) else "values too large"
            raise ValueError(f"{path}: {p} holds {bad} for {target} (the model's dtype)")
    elif target.kind in "iu" and a.dtype.kind in "iu":
        info = np.iinfo(target)
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise ValueError(f"{path}: {p} holds values outside the range of {target}")
        cast = a.astype(target)
    else:
        raise ValueError(f"{path}: {p} is {a.dtype} in the file, {target} in the model")
    return xp.astype(xp.asarray(cast, device=device(have)), have.dtype)  # on the model's device


def _numpy_dtype(dtype: Any) -> np.dtype:
    """NumPy's dtype of the same name (``torch.float32`` → float32)."""
    try:
        return np.dtype(dtype)
    except TypeError:
        return np.dtype(str(dtype).rsplit(".", 1)[-1])
