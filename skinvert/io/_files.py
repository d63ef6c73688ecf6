"""Generator files: ``.npz`` (NumPy, ``allow_pickle=False``) or ``.safetensors``.

Layout (both formats): arrays ``weight_0 .. weight_L`` and ``bias_0 .. bias_L``,
and a JSON header with the format name, its version, the output activation
and its parameters. In ``.npz`` the header is a unicode array ``__header__``;
in ``.safetensors`` it is the file's string metadata. Loading never unpickles:
a file holding object arrays or pickles is refused with a ``ValueError``.
"""

import json
import os
import zipfile

import numpy as np

FORMAT = "skinvert.ReLUGenerator"
VERSION = 1


def _header(generator):
    return {
        "format": FORMAT,
        "version": VERSION,
        "n_weights": len(generator.weights),
        "output_activation": generator.activation.name,
        "activation_params": generator.activation.params(),
    }


def _suffix(path):
    return os.path.splitext(os.fspath(path))[1].lower()


def save_generator(generator, path):
    """Write ``generator`` to ``path``; the suffix picks the format.

    Parameters
    ----------
    generator : ReLUGenerator
    path : str or path-like
        Ending in ``.npz`` or ``.safetensors``.
    """
    arrays = {}
    for i, (W, b) in enumerate(zip(generator.weights, generator.biases)):
        arrays[f"weight_{i}"] = np.ascontiguousarray(W)
        arrays[f"bias_{i}"] = np.ascontiguousarray(b)
    header = _header(generator)
    suffix = _suffix(path)
    if suffix == ".npz":
        with open(path, "wb") as fh:  # keep the exact file name (no implicit .npz)
            np.savez(fh, __header__=np.array(json.dumps(header)), **arrays)
    elif suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file(arrays, os.fspath(path), metadata={"skinvert": json.dumps(header)})
    else:
        raise ValueError(
            f"Unknown generator file suffix {suffix!r} for {path!r}: use .npz or "
            ".safetensors."
        )


def _read_npz(path):
    with open(path, "rb") as fh:  # FileNotFoundError propagates
        magic = fh.read(4)
    if magic[:2] != b"PK":
        # np.load would call any non-zip content "pickled data": say what it is.
        what = "a pickle" if magic[:1] == b"\x80" else "not a zip archive"
        raise ValueError(
            f"{path!r} is not a readable .npz file ({what}); skinvert never unpickles files."
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            if "__header__" not in files:
                raise ValueError(
                    f"{path!r} is not a skinvert generator file: no '__header__' entry."
                )
            header = json.loads(str(data["__header__"]))
            arrays = {k: data[k] for k in files if k != "__header__"}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise ValueError(
                f"{path!r} holds pickled objects; skinvert never unpickles files. "
                "Save the generator with ReLUGenerator.save (plain float arrays)."
            ) from exc
        raise
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path!r} is not a readable .npz file: {exc}") from exc
    return header, arrays


def _read_safetensors(path):
    try:
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - safetensors is optional
        raise ImportError("Reading .safetensors files needs `pip install safetensors`.") from exc
    try:
        with safe_open(os.fspath(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            if "skinvert" not in meta:
                raise ValueError(
                    f"{path!r} is not a skinvert generator file: no 'skinvert' metadata."
                )
            header = json.loads(meta["skinvert"])
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable .safetensors file: {exc}") from exc
    return header, arrays


def load_generator(path):
    """Read a generator written by :meth:`ReLUGenerator.save`.

    Parameters
    ----------
    path : str or path-like
        A ``.npz`` or ``.safetensors`` file.

    Returns
    -------
    generator : ReLUGenerator

    Raises
    ------
    ValueError
        If the file is not a skinvert generator file, holds pickled objects, or
        its arrays do not form a valid generator (the message names the layer).
    """
    from ..generator import ReLUGenerator

    suffix = _suffix(path)
    if suffix == ".npz":
        header, arrays = _read_npz(path)
    elif suffix == ".safetensors":
        header, arrays = _read_safetensors(path)
    else:
        raise ValueError(
            f"Unknown generator file suffix {suffix!r} for {path!r}: use .npz or "
            ".safetensors."
        )
    if header.get("format") != FORMAT:
        raise ValueError(f"{path!r} has format {header.get('format')!r}, not {FORMAT!r}.")
    if header.get("version", 0) > VERSION:
        raise ValueError(
            f"{path!r} was written by a newer skinvert (format version "
            f"{header['version']} > {VERSION})."
        )
    n = int(header["n_weights"])
    try:
        weights = [arrays[f"weight_{i}"] for i in range(n)]
        biases = [arrays[f"bias_{i}"] for i in range(n)]
    except KeyError as exc:
        raise ValueError(f"{path!r} misses the array {exc.args[0]!r}.") from exc
    activation = (header["output_activation"], dict(header.get("activation_params", {})))
    return ReLUGenerator(weights, biases, output_activation=activation)
