"""The package's public API: `__all__` lists it (so help(tinyvec) shows it) and every name
in it exists and is documented."""

import pydoc

import tinyvec as tv


def test_all_names_exist_and_help_lists_them():
    assert {"Dense", "Chain", "gradient", "gradcheck", "Layer", "save", "load", "mse"} <= set(
        tv.__all__
    )
    assert all(hasattr(tv, name) for name in tv.__all__)
    assert len(set(tv.__all__)) == len(tv.__all__)
    public = {n for n, v in vars(tv).items() if not n.startswith("_") and not _submodule(v)}
    assert public <= set(tv.__all__), f"exported but not in __all__: {public - set(tv.__all__)}"
    text = pydoc.render_doc(tv, renderer=pydoc.plaintext)
    for name in ("Dense", "Chain", "gradcheck", "Recorder", "ClipNorm"):
        assert name in text.split("CLASSES", 1)[1], name


def test_every_public_callable_has_a_docstring():
    undocumented = [
        name
        for name in tv.__all__
        if callable(getattr(tv, name)) and not (getattr(tv, name).__doc__ or "").strip()
    ]
    assert not undocumented


def _submodule(value):
    # the subpackages are importable but not the API (except `ops` and `analysis`, listed)
    return type(value).__name__ == "module" and value.__name__ not in (
        "tinyvec.ops",
        "tinyvec.analysis",
    )
