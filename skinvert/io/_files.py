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
import struct
import zipfile

import numpy as np

from .. import _file_format as ff
from ..generator import ReLUGenerator
from ._checks import check_members, check_stored
from ._layer_records import Layout1, Layout2, parse_records

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
    if version > ff.VERSION:  # version 2 also reads version 1
        raise ValueError(
            f"{path!r} was written by a newer skinvert (format version {version} > "
            f"{ff.VERSION})."
        )
    if version >= 2:
        layout = Layout2(*parse_records(header.get("layers"), path))
    else:
        n = header.get("n_weights")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= ff.MAX_LAYERS:
            raise ValueError(
                f"{path!r}: the header's n_weights must be an integer in [1, {ff.MAX_LAYERS}], "
                f"got {n!r}."
            )
        layout = Layout1(n)
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
    return layout, (name, dict(params))


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
            layout, activation = _parse_header(
                str(_read_member(zf, "__header__", path)), path)
            if others:
                raise ValueError(f"{path!r} holds unexpected members {sorted(others)[:5]}.")
            check_members(found - {"__header__"}, layout, path)
            declared, stored = {}, {}
            for key in layout.names:
                with zf.open(key + ".npy") as fh:
                    declared[key] = _npy_header(fh, key, path)
                    stored[key] = zf.getinfo(key + ".npy").file_size - fh.tell()
            layout.check(declared, path)
            for key in declared:
                check_stored(key, declared[key], stored[key], path)
            arrays = {key: _read_member(zf, key, path) for key in layout.names}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path!r} is not a readable .npz file: {exc}") from exc
    return layout, activation, arrays


# -- .safetensors --------------------------------------------------------------------------
_ST_DTYPES = {
    "F16": np.float16, "F32": np.float32, "F64": np.float64,
    "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
    "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
}


def _safetensors_header(path, meta_key="skinvert"):
    """Parse a .safetensors header (8-byte length, then JSON) with bounds.

    Returns the metadata string ``meta_key`` and every tensor's declared
    ``(shape, dtype)`` and stored byte count.
    """
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
    if not isinstance(meta, dict) or not isinstance(meta.get(meta_key), str):
        raise ValueError(f"{path!r} is not a skinvert generator file: no {meta_key!r} metadata.")
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
    return meta[meta_key], declared, stored


def _read_safetensors(path):
    try:
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - safetensors is optional
        raise ImportError("Reading .safetensors files needs `pip install safetensors`.") from exc
    text, declared, stored = _safetensors_header(path)
    layout, activation = _parse_header(text, path)
    check_members(set(declared), layout, path)
    layout.check(declared, path)
    for key in declared:
        check_stored(key, declared[key], stored[key], path)
    try:
        with safe_open(path, framework="numpy") as fh:
            arrays = {key: fh.get_tensor(key) for key in layout.names}
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable .safetensors file: {exc}") from exc
    return layout, activation, arrays


def read_layer_records(path, *, metadata_key, records, rename, activation, ignore=()):
    """A generator from a foreign ``.safetensors`` file described by version-2 ``records``.

    For shipped files in another layout (e.g. the DCGAN of
    :mod:`skinvert.datasets`): the same checks as :func:`load_generator`
    (declared shapes against the records before any read, sizes bounded, no
    member unaccounted for except those starting with a prefix in ``ignore``).

    Parameters
    ----------
    path : str
    metadata_key : str
        The ``__metadata__`` entry the file must have.
    records : list of dict
        Version-2 layer records (see :mod:`skinvert._file_format`).
    rename : dict of str to str
        The record array name (``"layer_0.0.weight"``) -> the file's tensor name.
    activation : str or (str, dict)
        The output activation.
    ignore : tuple of str, default=()
        Prefixes of tensors the file may hold besides the layers (not read).

    Returns
    -------
    generator : ReLUGenerator
    """
    try:
        from safetensors import safe_open
    except ImportError as exc:  # pragma: no cover - safetensors is optional
        raise ImportError("Reading .safetensors files needs `pip install safetensors`.") from exc
    path = ff.as_path(path)
    _, declared, stored = _safetensors_header(path, metadata_key)
    layout = Layout2(*parse_records(records, path))
    theirs = {mine: rename.get(mine, mine) for mine in layout.names}
    back = {v: k for k, v in theirs.items()}
    found = {back.get(k, k) for k in declared if not (ignore and k.startswith(tuple(ignore)))}
    check_members(found, layout, path)
    layout.check({mine: declared[theirs[mine]] for mine in layout.names}, path, theirs)
    for key in theirs.values():
        check_stored(key, declared[key], stored[key], path)
    try:
        with safe_open(path, framework="numpy") as fh:
            arrays = {mine: fh.get_tensor(key) for mine, key in theirs.items()}
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable .safetensors file: {exc}") from exc
    return layout.build(arrays, activation, path)


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
        layout, activation, arrays = _read_npz(path)
    elif kind == ".safetensors":
        layout, activation, arrays = _read_safetensors(path)
    else:
        raise ff._unknown_suffix(path)
    return layout.build(arrays, activation, path)
