"""Checks of a generator file's declared arrays, before any data is read."""

import math

from .. import _file_format as ff

__all__ = ["check_declared", "check_limits", "check_members", "check_stored"]


def check_members(found, layout, path):
    """The file must hold exactly the header's arrays (nothing more, nothing less)."""
    expected = set(layout.names)
    missing = sorted(expected - found)
    if missing:
        raise ValueError(
            f"{path!r} misses the array {missing[0]!r} (header: {layout.what})."
        )
    extra = sorted(found - expected)
    if extra:
        more = " (the header claims fewer layers than stored)" if any(
            e.startswith(("weight_", "bias_", "layer_")) for e in extra
        ) else ""
        raise ValueError(
            f"{path!r} holds unexpected arrays {extra[:5]}{more}; it was not written by "
            "ReLUGenerator.save."
        )


def check_declared(shapes, n, path):
    """Check declared version-1 shapes (before reading any data): layout, chaining, bounds."""
    for key, (shape, _) in shapes.items():
        kind = "weight" if key.startswith("weight_") else "bias"
        ndim = 2 if kind == "weight" else 1
        if len(shape) != ndim or any(not isinstance(s, int) or s < 0 for s in shape):
            raise ValueError(
                f"{path!r}: array {key!r} declares shape {tuple(shape)}, not a {ndim}-D shape."
            )
    check_limits(shapes, path)
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


def check_limits(shapes, path):
    """Every declared array: real dtype, at most MAX_ARRAY_ENTRIES entries, bounded total."""
    total = 0
    for key, (shape, dtype) in shapes.items():
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in shape):
            raise ValueError(f"{path!r}: array {key!r} declares a malformed shape {shape!r}.")
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


def check_stored(key, declared, stored, path):
    """The bytes a member really holds must match its declared shape (no allocation first)."""
    shape, dtype = declared
    need = math.prod(shape) * dtype.itemsize
    if need != stored:
        raise ValueError(
            f"{path!r}: array {key!r} declares shape {tuple(shape)} of {dtype} "
            f"({need} bytes) but stores {stored} bytes."
        )
