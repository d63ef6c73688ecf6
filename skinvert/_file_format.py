"""The generator file format: layout, header, limits and the writer.

Both formats hold arrays ``weight_0 .. weight_L`` and ``bias_0 .. bias_L``
and a JSON header (format name, version, number of weight matrices, output
activation and its parameters). In ``.npz`` the header is a 0-d unicode array
``__header__``; in ``.safetensors`` it is the ``skinvert`` string of the file's
metadata. The reader (:func:`skinvert.io.load_generator`) lives in
:mod:`skinvert.io`; this module sits below :mod:`skinvert.generator` so that
``ReLUGenerator.save`` writes files without importing :mod:`skinvert.io`.
The limits below bound what a hostile file can make the reader allocate
(docs/security.md).
"""

import json
import os

import numpy as np

__all__ = ["FORMAT", "VERSION", "as_path", "make_header", "suffix", "write"]

FORMAT = "skinvert.ReLUGenerator"
VERSION = 1

#: Largest JSON header (bytes), in either format.
MAX_HEADER_BYTES = 1 << 16
#: Largest number of weight matrices a header may declare.
MAX_LAYERS = 1024
#: Largest number of entries of one array, and of all arrays of one file
#: together (2**28 float64 entries are 2 GiB).
MAX_ARRAY_ENTRIES = 1 << 28
MAX_TOTAL_ENTRIES = 1 << 28


def as_path(path):
    """``path`` (str, bytes or os.PathLike) as a str; TypeError otherwise."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError as exc:
        raise TypeError(
            f"path must be a str, bytes or os.PathLike, got {type(path).__name__}."
        ) from exc


def suffix(path):
    """The lower-case suffix of a path given as str, bytes or os.PathLike."""
    return os.path.splitext(as_path(path))[1].lower()


def _unknown_suffix(path):
    return ValueError(
        f"Unknown generator file suffix {suffix(path)!r} for {as_path(path)!r}: use .npz "
        "or .safetensors."
    )


def make_header(n_weights, activation):
    """The JSON-able header of a generator with ``n_weights`` layers and phi ``activation``."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "n_weights": int(n_weights),
        "output_activation": activation.name,
        "activation_params": activation.params(),
    }


def write(path, header, weights, biases):
    """Write a generator file; the suffix of ``path`` picks the format.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Ending in ``.npz`` or ``.safetensors``.
    header : dict
        From :func:`make_header`.
    weights, biases : lists of host arrays
    """
    arrays = {}
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        arrays[f"weight_{i}"] = np.ascontiguousarray(W)
        arrays[f"bias_{i}"] = np.ascontiguousarray(b)
    kind = suffix(path)
    path = as_path(path)
    if kind == ".npz":
        with open(path, "wb") as fh:  # keep the exact file name (no implicit .npz)
            np.savez(fh, __header__=np.array(json.dumps(header)), **arrays)
    elif kind == ".safetensors":
        try:
            from safetensors.numpy import save_file
        except ImportError as exc:  # pragma: no cover - safetensors is optional
            raise ImportError(
                "Writing .safetensors files needs `pip install safetensors`."
            ) from exc
        save_file(arrays, path, metadata={"skinvert": json.dumps(header)})
    else:
        raise _unknown_suffix(path)
