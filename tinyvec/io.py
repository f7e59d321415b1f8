"""Saving and loading parameters as ``.npz``: one array per parameter path, no pickles.

The file holds ``model.layers[0].weight``-style keys and a format tag. `load` refuses a file
that is not such an archive, or whose paths or shapes differ from the model's, naming the
parameter, and changes nothing in that case.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .backend import namespace, to_numpy
from .engine.tensor import data
from .layers.base import trainables

FORMAT = "tinyvec-params-1"
_TAG = "__format__"


def save(path: str | os.PathLike[str], model: Any) -> None:
    """Write every parameter of ``model`` to ``path`` (atomically: a crash leaves any old file)."""
    arrays = {p: to_numpy(data(getattr(layer, name))) for p, layer, name in trainables(model)}
    arrays[_TAG] = np.array(FORMAT)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str], model: Any) -> Any:
    """Read parameters saved by `save` into ``model`` (in place, keeping its namespace and
    dtype) and return it."""
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable tinyvec .npz file ({e})") from e
    if _TAG not in stored or str(stored.pop(_TAG)) != FORMAT:
        raise ValueError(f"{path}: not a tinyvec parameter file (no {_TAG!r} = {FORMAT!r})")
    targets = list(trainables(model))
    wanted = {p for p, _, _ in targets}
    if missing := sorted(wanted - stored.keys()):
        raise ValueError(f"{path}: the file has no parameter {missing[0]} (missing: {missing})")
    if extra := sorted(stored.keys() - wanted):
        raise ValueError(f"{path}: the file has parameters the model lacks: {extra}")
    for p, layer, name in targets:
        have = data(getattr(layer, name))
        if tuple(stored[p].shape) != tuple(have.shape):
            raise ValueError(
                f"{path}: {p} has shape {tuple(stored[p].shape)} in the file, "
                f"{tuple(have.shape)} in the model"
            )
        if not np.all(np.isfinite(stored[p])):
            raise ValueError(f"{path}: {p} holds NaN or infinite values")
    for p, layer, name in targets:  # all checked: now change the model
        have = data(getattr(layer, name))
        xp = namespace(have)
        setattr(layer, name, xp.astype(xp.asarray(stored[p]), have.dtype))
    return model
