"""Reading generator files: ``.npz`` (never unpickled) or ``.safetensors``.

The layout and the writer live in :mod:`skinvert._file_format`. The reader
trusts nothing in a file: it parses the header first and checks it (format,
version, layer count, activation), then reads, member by member, only the
arrays the header calls for, after checking each member's declared dtype and
shape against the layout and against :data:`~skinvert._file_format.MAX_ARRAY_ENTRIES`
and :data:`~skinvert._file_format.MAX_TOTAL_ENTRIES`. Anything else is a
``ValueError`` saying what is wrong (docs/security.md).
"""

import json
import math
import struct
import zipfile

import numpy as np

from .. import _file_format as ff
from ..generator import ReLUGenerator

__all__ = ["load_generator", "save_generator"]


def save_generator(generator, path):
    """Write ``generator`` to ``path``; the suffix picks the format.

    Parameters
    ----------
    generator : ReLUGenerator
        The generator to write.
    path : str, bytes or os.PathLike
        Ending in ``.npz`` or ``.safetensors``.
    """
    if not isinstance(generator, ReLUGenerator):
        raise TypeError(f"generator must be a ReLUGenerator, got {type(generator).__name__}.")
    generator.save(path)


# -- the header -------------------------------------------------------------------
def _parse_header(text, path):
    if len(text) > ff.MAX_HEADER_BYTES:
        raise ValueError(f"{path!r}: the header is longer than {ff.MAX_HEADER_BYTES} bytes.")
    try:
        header = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: the header is not valid JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise ValueError(
            f"{path!r}: the header must be a JSON object, got {type(header).__name__}."
        )
    if header.get("format") != ff.FORMAT:
        raise ValueError(f"{path!r} has format {header.get('format')!r}, not {ff.FORMAT!r}.")
    version = header.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path!r}: the header's version must be an integer, got {version!r}.")
    if version > ff.VERSION:
        raise ValueError(
            f"{path!r} was written by a newer skinvert (format version {version} > "
            f"{ff.VERSION})."
        )
    n = header.get("n_weights")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= ff.MAX_LAYERS:
        raise ValueError(
            f"{path!r}: the header's n_weights must be an integer in [1, {ff.MAX_LAYERS}], "
            f"got {n!r}."
        )
    name = header.get("output_activation")
    params = header.get("activation_params", {})
    if not isinstance(name, str):
        raise ValueError(
            f"{path!r}: the header's output_activation must be a string, got {name!r}."
        )
    if not isinstance(params, dict):
        raise ValueError(
            f"{path!r}: the header's activation_params must be a JSON object, got {params!r}."
        )
    return n, (name, dict(params))


def _expected_names(n):
    return [f"{kind}_{i}" for i in range(n) for kind in ("weight", "bias")]


def _check_members(found, n, path):
    """The file must hold exactly the header's arrays (nothing more, nothing less)."""
    expected = set(_expected_names(n))
    missing = sorted(expected - found)
    if missing:
        raise ValueError(
            f"{path!r} misses the array {missing[0]!r} (header: {n} weight matrices)."
        )
    extra = sorted(found - expected)
    if extra:
        more = " (the header claims fewer layers than stored)" if any(
            e.startswith(("weight_", "bias_")) for e in extra
        ) else ""
        raise ValueError(
            f"{path!r} holds unexpected arrays {extra[:5]}{more}; it was not written by "
            "ReLUGenerator.save."
        )


def _check_declared(shapes, n, path):
    """Check declared shapes (before reading any data): layout, chaining, bounds."""
    total = 0
    for key, (shape, dtype) in shapes.items():
        kind = "weight" if key.startswith("weight_") else "bias"
        ndim = 2 if kind == "weight" else 1
        if len(shape) != ndim or any(not isinstance(s, int) or s < 0 for s in shape):
            raise ValueError(
                f"{path!r}: array {key!r} declares shape {tuple(shape)}, not a {ndim}-D shape."
            )
        count = math.prod(shape)
        if count > ff.MAX_ARRAY_ENTRIES:
            raise ValueError(
                f"{path!r}: array {key!r} declares shape {tuple(shape)} ({count} entries), "
                f"more than the limit of {ff.MAX_ARRAY_ENTRIES}."
            )
        total += count
        if dtype.kind not in "fiu" or dtype.itemsize > 8:
            raise ValueError(
                f"{path!r}: array {key!r} has dtype {dtype}, not a real number type."
            )
    if total > ff.MAX_TOTAL_ENTRIES:
        raise ValueError(
            f"{path!r} declares {total} entries in all, more than the limit of "
            f"{ff.MAX_TOTAL_ENTRIES}."
        )
    for i in range(n):
        (n_out, n_in), _ = shapes[f"weight_{i}"]
        if i > 0 and n_in != shapes[f"weight_{i - 1}"][0][0]:
            raise ValueError(
                f"{path!r}: weight_{i} declares {n_in} columns, but weight_{i - 1} has "
                f"{shapes[f'weight_{i - 1}'][0][0]} rows (the layers do not chain)."
            )
        if shapes[f"bias_{i}"][0] != (n_out,):
            raise ValueError(
                f"{path!r}: bias_{i} declares shape {tuple(shapes[f'bias_{i}'][0])}, but "
                f"weight_{i} has {n_out} rows."
            )


def _check_stored(key, declared, stored, path):
    """The bytes a member really holds must match its declared shape (no allocation first)."""
    shape, dtype = declared
    need = math.prod(shape) * dtype.itemsize
    if need != stored:
        raise ValueError(
            f"{path!r}: array {key!r} declares shape {tuple(shape)} of {dtype} "
            f"({need} bytes) but stores {stored} bytes."
        )


# -- .npz -------------------------------------------------------------------------------
def _npy_header(fh, key, path):
    try:
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else (
            np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(fh, max_header_size=ff.MAX_HEADER_BYTES)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{path!r}: array {key!r} has no readable .npy header ({exc}).") from exc
    if dtype.hasobject:
        raise ValueError(
            f"{path!r} holds pickled objects; skinvert never unpickles files (array {key!r}). "
            "Save the generator with ReLUGenerator.save (plain float arrays)."
        )
    return tuple(shape), dtype


def _read_member(zf, key, path):
    with zf.open(key + ".npy") as fh:
        return np.lib.format.read_array(
            fh, allow_pickle=False, max_header_size=ff.MAX_HEADER_BYTES
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
        with zipfile.ZipFile(path) as zf:
            found = {name[:-4] for name in zf.namelist() if name.endswith(".npy")}
            others = [name for name in zf.namelist() if not name.endswith(".npy")]
            if "__header__" not in found:
                raise ValueError(
                    f"{path!r} is not a skinvert generator file: no '__header__' entry."
                )
            if len(zf.namelist()) > 2 * ff.MAX_LAYERS + 1:
                raise ValueError(f"{path!r} holds {len(zf.namelist())} members, too many.")
            for key in sorted(found):  # headers only: refuse object arrays unread
                with zf.open(key + ".npy") as fh:
                    _npy_header(fh, key, path)
            with zf.open("__header__.npy") as fh:
                shape, dtype = _npy_header(fh, "__header__", path)
            if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * ff.MAX_HEADER_BYTES:
                raise ValueError(
                    f"{path!r}: '__header__' must be a 0-d unicode array of at most "
                    f"{ff.MAX_HEADER_BYTES} characters, got shape {shape} and dtype {dtype}."
                )
            n, activation = _parse_header(str(_read_member(zf, "__header__", path)), path)
            if others:
                raise ValueError(f"{path!r} holds unexpected members {sorted(others)[:5]}.")
            _check_members(found - {"__header__"}, n, path)
            declared, stored = {}, {}
            for key in _expected_names(n):
                with zf.open(key + ".npy") as fh:
                    declared[key] = _npy_header(fh, key, path)
                    stored[key] = zf.getinfo(key + ".npy").file_size - fh.tell()
            _check_declared(declared, n, path)
            for key in declared:
                _check_stored(key, declared[key], stored[key], path)
            arrays = {key: _read_member(zf, key, path) for key in _expected_names(n)}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a readable .npz file: {exc}") from exc
    return n, activation, arrays


# -- .safetensors --------------------------------------------------------------------------
_ST_DTYPES = {
    "F16": np.float16, "F32": np.float32, "F64": np.float64,
    "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
    "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
}


def _safetensors_header(path):
    """Parse a .safetensors header (8-byte length, then JSON) with bounds."""
    with open(path, "rb") as fh:  # FileNotFoundError propagates
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path!r} is not a readable .safetensors file (too short).")
        (length,) = struct.unpack("<Q", head)
        if length > ff.MAX_HEADER_BYTES:
            raise ValueError(
                f"{path!r}: the .safetensors header declares {length} bytes, more than the "
                f"limit of {ff.MAX_HEADER_BYTES}."
            )
        raw = fh.read(length)
        data_bytes = fh.seek(0, 2) - 8 - length
    try:
        info = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path!r} is not a readable .safetensors file: {exc}") from exc
    if not isinstance(info, dict):
        raise ValueError(f"{path!r} is not a readable .safetensors file (header not an object).")
    meta = info.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not isinstance(meta.get("skinvert"), str):
        raise ValueError(f"{path!r} is not a skinvert generator file: no 'skinvert' metadata.")
    declared, stored = {}, {}
    for key, entry in info.items():
        if not isinstance(entry, dict) or entry.get("dtype") not in _ST_DTYPES or not isinstance(
            entry.get("shape"), list
        ):
            raise ValueError(
                f"{path!r}: tensor {key!r} has a malformed or non-real entry {entry!r}."
            )
        declared[key] = (tuple(entry["shape"]), np.dtype(_ST_DTYPES[entry["dtype"]]))
        offsets = entry.get("data_offsets")
        if (
            not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and 0 <= o <= data_bytes for o in offsets)
        ):
            raise ValueError(
                f"{path!r}: tensor {key!r} has data_offsets {offsets!r} outside the file's "
                f"{data_bytes} data bytes."
            )
        stored[key] = offsets[1] - offsets[0]
    return meta["skinvert"], declared, stored


def _read_safetensors(path):
    try:
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - safetensors is optional
        raise ImportError("Reading .safetensors files needs `pip install safetensors`.") from exc
    text, declared, stored = _safetensors_header(path)
    n, activation = _parse_header(text, path)
    _check_members(set(declared), n, path)
    _check_declared(declared, n, path)
    for key in declared:
        _check_stored(key, declared[key], stored[key], path)
    try:
        with safe_open(path, framework="numpy") as fh:
            arrays = {key: fh.get_tensor(key) for key in _expected_names(n)}
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable .safetensors file: {exc}") from exc
    return n, activation, arrays


def load_generator(path):
    """Read a generator written by :meth:`ReLUGenerator.save`.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        A ``.npz`` or ``.safetensors`` file.

    Returns
    -------
    generator : ReLUGenerator
        The generator, validated as a new one is.

    Raises
    ------
    ValueError
        If the file is not a skinvert generator file, its header is malformed,
        it holds pickled objects or arrays the header does not call for, an
        array's declared shape breaks the layout or the size limits, or its
        arrays do not form a valid generator (the message names the layer).
    """
    kind = ff.suffix(path)
    path = ff.as_path(path)
    if kind == ".npz":
        n, activation, arrays = _read_npz(path)
    elif kind == ".safetensors":
        n, activation, arrays = _read_safetensors(path)
    else:
        raise ff._unknown_suffix(path)
    weights = [arrays[f"weight_{i}"] for i in range(n)]
    biases = [arrays[f"bias_{i}"] for i in range(n)]
    return ReLUGenerator(weights, biases, output_activation=activation)
