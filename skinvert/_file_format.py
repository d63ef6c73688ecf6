"""The generator file format: layout, header, limits and the writer.

A file holds plain arrays and a JSON header (format name, version, output
activation and its parameters). In ``.npz`` the header is a 0-d unicode array
``__header__``; in ``.safetensors`` it is the ``skinvert`` string of the file's
metadata. Two layouts:

* version 1 (fully connected generators, readable by every skinvert):
  the header's ``n_weights`` and arrays ``weight_0 .. weight_L``,
  ``bias_0 .. bias_L`` (dense matrices ``W_i`` and biases);
* version 2 (any layers): the header's ``layers``, one record per layer
  ``{"type": ..., "config": {...}}`` (a ``Composite`` also has ``"layers"``,
  its children's records), and arrays ``layer_{i}.weight`` /
  ``layer_{i}.bias`` (``layer_{i}.{j}.weight`` inside a ``Composite``) in the
  layer's own layout: a ``Dense`` matrix ``(n_out, n_in)``, a ``Conv2d``
  kernel ``(C_out, C_in, kh, kw)`` or a ``ConvTranspose2d`` kernel
  ``(C_in, C_out, kh, kw)`` and per-channel bias ``(C_out,)``. ``Reshape``
  and ``Upsample`` have no arrays. The configuration alone fixes every
  array's shape, so the reader checks declared shapes before reading data.
 The reader (:func:`skinvert.io.load_generator`) lives in
:mod:`skinvert.io`; this module sits below :mod:`skinvert.generator` so that
``ReLUGenerator.save`` writes files without importing :mod:`skinvert.io`.
The limits below bound what a hostile file can make the reader allocate
(docs/security.md).
"""

import json
import os

import numpy as np

from .operators import Composite, Conv2d, ConvTranspose2d, Dense, Reshape, Upsample

__all__ = [
    "FORMAT",
    "VERSION",
    "as_path",
    "dense_arrays",
    "layer_record",
    "layers_header",
    "make_header",
    "suffix",
    "write",
]

FORMAT = "skinvert.ReLUGenerator"
#: The newest layout this skinvert reads and writes (1: dense, 2: any layers).
VERSION = 2
#: Deepest nesting of ``Composite`` records.
MAX_DEPTH = 4

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
    """The version-1 header: a dense generator, ``n_weights`` layers, phi ``activation``."""
    return {
        "format": FORMAT,
        "version": 1,
        "n_weights": int(n_weights),
        "output_activation": activation.name,
        "activation_params": activation.params(),
    }


def dense_arrays(weights, biases):
    """The version-1 arrays ``weight_i`` / ``bias_i``."""
    arrays = {}
    for i, (W, b) in enumerate(zip(weights, biases, strict=True)):
        arrays[f"weight_{i}"] = W
        arrays[f"bias_{i}"] = b
    return arrays


def _ints(values):
    return [int(v) for v in values]


def layer_record(layer, prefix, arrays):
    """The version-2 record of ``layer``; its arrays go into ``arrays`` under ``prefix``."""
    kind = type(layer)
    if kind is Dense:
        config = {"n_in": layer.n_in, "n_out": layer.n_out}
        arrays[prefix + ".weight"], arrays[prefix + ".bias"] = layer.weight, layer.bias
    elif kind in (Conv2d, ConvTranspose2d):
        w = layer.weight
        config = {
            "in_shape": _ints(layer.in_shape),
            "out_channels": int(layer.out_shape[0]),
            "kernel_size": _ints(w.shape[2:]),
            "stride": _ints(layer.stride),
            "padding": _ints(layer.padding),
        }
        if kind is ConvTranspose2d:
            config["output_padding"] = _ints(layer.output_padding)
        arrays[prefix + ".weight"], arrays[prefix + ".bias"] = w, layer.channel_bias
    elif kind is Upsample:
        config = {"in_shape": _ints(layer.in_shape), "scale_factor": _ints(layer.scale_factor)}
    elif kind is Reshape:
        config = {"in_shape": _ints(layer.in_shape), "out_shape": _ints(layer.out_shape)}
    elif kind is Composite:
        children = [layer_record(child, f"{prefix}.{j}", arrays)
                    for j, child in enumerate(layer.layers)]
        return {"type": "Composite", "config": {}, "layers": children}
    else:
        raise TypeError(
            f"Cannot write a {kind.__name__} layer to a generator file: the format stores "
            "Dense, Conv2d, ConvTranspose2d, Upsample, Reshape and Composite layers."
        )
    return {"type": kind.__name__, "config": config}


def layers_header(layers, activation):
    """The version-2 header and arrays of a generator made of ``layers``."""
    arrays = {}
    records = [layer_record(layer, f"layer_{i}", arrays) for i, layer in enumerate(layers)]
    header = {
        "format": FORMAT,
        "version": 2,
        "layers": records,
        "output_activation": activation.name,
        "activation_params": activation.params(),
    }
    return header, arrays


def write(path, header, arrays):
    """Write a generator file; the suffix of ``path`` picks the format.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Ending in ``.npz`` or ``.safetensors``.
    header : dict
        From :func:`make_header` or :func:`layers_header`.
    arrays : dict of str to host arrays
        From :func:`dense_arrays` or :func:`layers_header`.
    """
    arrays = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
    text = json.dumps(header)
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(
            f"The generator's header has {len(text)} bytes, more than the format's limit of "
            f"{MAX_HEADER_BYTES}: too many layers."
        )
    kind = suffix(path)
    path = as_path(path)
    if kind == ".npz":
        with open(path, "wb") as fh:  # keep the exact file name (no implicit .npz)
            np.savez(fh, __header__=np.array(text), **arrays)
    elif kind == ".safetensors":
        try:
            from safetensors.numpy import save_file
        except ImportError as exc:  # pragma: no cover - safetensors is optional
            raise ImportError(
                "Writing .safetensors files needs `pip install safetensors`."
            ) from exc
        save_file(arrays, path, metadata={"skinvert": text})
    else:
        raise _unknown_suffix(path)
