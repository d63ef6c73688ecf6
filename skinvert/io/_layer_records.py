"""Version-2 generator files: the per-layer records of the header, checked before any read.

A record is ``{"type": name, "config": {...}}`` (a ``Composite`` has its
children's records under ``"layers"``); see :mod:`skinvert._file_format`.
:func:`parse_records` checks every record (types, integer ranges, shape
arithmetic, chaining, the size of the index plans a layer will build) and
returns the exact shape of every array the file must hold, so that the
reader can compare the file's declared shapes before it reads any data.
:func:`build_layers` then builds the layers through their constructors,
which validate the values.
"""

import math

from .. import _file_format as ff
from ..generator import ReLUGenerator
from ..operators import Composite, Conv2d, ConvTranspose2d, Dense, Reshape, Upsample
from ._checks import check_declared, check_limits

__all__ = ["Layout1", "Layout2", "build_layers", "parse_records"]

_CONFIG_KEYS = {
    "Dense": {"n_in", "n_out"},
    "Conv2d": {"in_shape", "out_channels", "kernel_size", "stride", "padding"},
    "ConvTranspose2d": {"in_shape", "out_channels", "kernel_size", "stride", "padding",
                        "output_padding"},
    "Upsample": {"in_shape", "scale_factor"},
    "Reshape": {"in_shape", "out_shape"},
    "Composite": set(),
}


class _Bad(ValueError):
    pass


def _int(value, what, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Bad(f"{what} must be an integer, got {value!r}")
    if not minimum <= value <= ff.MAX_ARRAY_ENTRIES:
        raise _Bad(f"{what} must be in [{minimum}, {ff.MAX_ARRAY_ENTRIES}], got {value!r}")
    return value


def _ints(value, what, length=None, minimum=1):
    if not isinstance(value, list) or not value or (length is not None and len(value) != length):
        n = f"{length} " if length else ""
        raise _Bad(f"{what} must be a list of {n}integers, got {value!r}")
    out = tuple(_int(v, what, minimum) for v in value)
    if math.prod(out) > ff.MAX_ARRAY_ENTRIES:
        raise _Bad(f"{what} = {list(out)} has more than {ff.MAX_ARRAY_ENTRIES} entries")
    return out


def _bounded(count, what):
    if count > ff.MAX_ARRAY_ENTRIES:
        raise _Bad(f"{what} would need {count} index entries, more than the limit of "
                   f"{ff.MAX_ARRAY_ENTRIES}")


def _conv(kind, cfg):
    in_shape = _ints(cfg["in_shape"], "in_shape", 3)
    c_out = _int(cfg["out_channels"], "out_channels")
    kh, kw = _ints(cfg["kernel_size"], "kernel_size", 2)
    stride = _ints(cfg["stride"], "stride", 2)
    padding = _ints(cfg["padding"], "padding", 2, minimum=0)
    c_in, H, W = in_shape
    extra = {}
    if kind == "Conv2d":
        if H + 2 * padding[0] < kh or W + 2 * padding[1] < kw:
            raise _Bad(f"kernel {kh}x{kw} is larger than the padded input")
        out_hw = ((H + 2 * padding[0] - kh) // stride[0] + 1,
                  (W + 2 * padding[1] - kw) // stride[1] + 1)
        weight = (c_out, c_in, kh, kw)
    else:
        op = _ints(cfg["output_padding"], "output_padding", 2, minimum=0)
        if op[0] >= stride[0] or op[1] >= stride[1]:
            raise _Bad(f"output_padding {list(op)} must be smaller than stride {list(stride)}")
        out_hw = ((H - 1) * stride[0] - 2 * padding[0] + kh + op[0],
                  (W - 1) * stride[1] - 2 * padding[1] + kw + op[1])
        if min(out_hw) < 1:
            raise _Bad(f"the output size {list(out_hw)} is not positive")
        weight = (c_in, c_out, kh, kw)
        extra["output_padding"] = op
    # The index plans of both products (one entry per kernel tap and pixel).
    _bounded(c_in * kh * kw * out_hw[0] * out_hw[1], "the forward index plan")
    _bounded(c_out * kh * kw * H * W, "the adjoint index plan")
    out_shape = (c_out, *out_hw)
    config = {"in_shape": in_shape, "stride": stride, "padding": padding, **extra}
    return in_shape, out_shape, {"weight": weight, "bias": (c_out,)}, config


def _parse(record, prefix, depth, count, expected):
    """One record -> node ``(type, config, in_shape, out_shape, children)``."""
    where = prefix
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        raise _Bad(f"{where}: a layer record must be an object with a 'type' string, "
                   f"got {record!r:.200}")
    kind = record["type"]
    if kind not in _CONFIG_KEYS:
        raise _Bad(f"{where}: unknown layer type {kind!r:.100} (known: "
                   f"{', '.join(sorted(_CONFIG_KEYS))})")
    cfg = record.get("config")
    allowed = {"type", "config"} | ({"layers"} if kind == "Composite" else set())
    if not isinstance(cfg, dict) or set(cfg) != _CONFIG_KEYS[kind] or set(record) - allowed:
        raise _Bad(f"{where}: a {kind} record needs exactly the config keys "
                   f"{sorted(_CONFIG_KEYS[kind])}, got {record!r:.200}")
    count[0] += 1
    if count[0] > ff.MAX_LAYERS:
        raise _Bad(f"more than {ff.MAX_LAYERS} layer records")
    try:
        return _parse_kind(kind, cfg, record, prefix, depth, count, expected)
    except _Bad as exc:
        if str(exc).startswith("layer_"):
            raise
        raise _Bad(f"{where} ({kind}): {exc}") from None


def _parse_kind(kind, cfg, record, prefix, depth, count, expected):
    children = None
    if kind == "Dense":
        n_in, n_out = _int(cfg["n_in"], "n_in"), _int(cfg["n_out"], "n_out")
        in_shape, out_shape, arrays, config = (n_in,), (n_out,), {
            "weight": (n_out, n_in), "bias": (n_out,)}, {}
    elif kind in ("Conv2d", "ConvTranspose2d"):
        in_shape, out_shape, arrays, config = _conv(kind, cfg)
    elif kind == "Upsample":
        in_shape = _ints(cfg["in_shape"], "in_shape", 3)
        scale = _ints(cfg["scale_factor"], "scale_factor", 2)
        out_shape = (in_shape[0], in_shape[1] * scale[0], in_shape[2] * scale[1])
        _bounded(math.prod(out_shape), "the upsampling index")
        arrays, config = {}, {"scale_factor": scale, "in_shape": in_shape}
    elif kind == "Reshape":
        in_shape, out_shape = _ints(cfg["in_shape"], "in_shape"), _ints(cfg["out_shape"],
                                                                         "out_shape")
        if math.prod(in_shape) != math.prod(out_shape):
            raise _Bad(f"in_shape {list(in_shape)} and out_shape {list(out_shape)} differ in size")
        arrays, config = {}, {"in_shape": in_shape, "out_shape": out_shape}
    else:
        if depth >= ff.MAX_DEPTH:
            raise _Bad(f"Composite records nest deeper than {ff.MAX_DEPTH}")
        subs = record.get("layers")
        if not isinstance(subs, list) or not subs:
            raise _Bad("a Composite record needs a non-empty 'layers' list")
        children = [_parse(r, f"{prefix}.{j}", depth + 1, count, expected)
                    for j, r in enumerate(subs)]
        for j in range(1, len(children)):
            if children[j][2] != children[j - 1][3]:
                raise _Bad(f"child {j} takes shape {list(children[j][2])} but child {j - 1} "
                           f"outputs {list(children[j - 1][3])}")
        in_shape, out_shape, arrays, config = children[0][2], children[-1][3], {}, {}
    for name, shape in arrays.items():
        if math.prod(shape) > ff.MAX_ARRAY_ENTRIES:
            raise _Bad(f"its {name} would have shape {list(shape)}, more than "
                       f"{ff.MAX_ARRAY_ENTRIES} entries")
        expected[f"{prefix}.{name}"] = shape
    return (kind, config, in_shape, out_shape, children)


def parse_records(records, path):
    """Check the header's ``layers`` and return the nodes and the expected arrays.

    Parameters
    ----------
    records : object
        The header's ``layers`` entry (untrusted JSON).
    path : str
        For messages.

    Returns
    -------
    nodes : list
        One parsed node per generator layer, for :func:`build_layers`.
    expected : dict of str to tuple of int
        The exact shape of every array the file must hold.

    Raises
    ------
    ValueError
        Naming the record, for anything malformed, too large, or layers
        whose flattened sizes do not chain.
    """
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path!r}: the header's layers must be a non-empty list of records.")
    expected, count = {}, [0]
    try:
        nodes = [_parse(r, f"layer_{i}", 0, count, expected) for i, r in enumerate(records)]
    except _Bad as exc:
        raise ValueError(f"{path!r}: {exc}.") from None
    for i in range(1, len(nodes)):
        n_in, n_prev = math.prod(nodes[i][2]), math.prod(nodes[i - 1][3])
        if n_in != n_prev:
            raise ValueError(f"{path!r}: layer_{i} takes {n_in} inputs but layer_{i - 1} "
                             f"outputs {n_prev} (the layers do not chain).")
    return nodes, expected


def _build(node, prefix, arrays):
    kind, config, in_shape, out_shape, children = node
    if kind == "Dense":
        return Dense(arrays[prefix + ".weight"], arrays[prefix + ".bias"])
    if kind == "Conv2d":
        return Conv2d(arrays[prefix + ".weight"], arrays[prefix + ".bias"], **config)
    if kind == "ConvTranspose2d":
        return ConvTranspose2d(arrays[prefix + ".weight"], arrays[prefix + ".bias"], **config)
    if kind == "Upsample":
        return Upsample(**config)
    if kind == "Reshape":
        return Reshape(**config)
    return Composite([_build(c, f"{prefix}.{j}", arrays) for j, c in enumerate(children)])


def build_layers(nodes, arrays, path):
    """The host layers of the parsed ``nodes`` from the file's ``arrays`` (validated)."""
    layers = []
    for i, node in enumerate(nodes):
        try:
            layers.append(_build(node, f"layer_{i}", arrays))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path!r}: layer_{i} ({node[0]}) is invalid: {exc}") from exc
    return layers


class Layout1:
    """Version 1: ``weight_i`` / ``bias_i`` dense matrices and biases."""

    def __init__(self, n):
        self.n = n
        self.names = [f"{kind}_{i}" for i in range(n) for kind in ("weight", "bias")]
        self.what = f"{n} weight matrices"

    def check(self, shapes, path):
        check_declared(shapes, self.n, path)

    def build(self, arrays, activation, path):
        weights = [arrays[f"weight_{i}"] for i in range(self.n)]
        biases = [arrays[f"bias_{i}"] for i in range(self.n)]
        return ReLUGenerator(weights, biases, output_activation=activation)


class Layout2:
    """Version 2: per-layer records; every array's shape follows from the header."""

    def __init__(self, nodes, expected):
        self.nodes, self.expected = nodes, expected
        self.names = list(expected)
        self.what = f"{len(nodes)} layers"

    def check(self, shapes, path, shown=None):
        """Declared ``{name: (shape, dtype)}`` against the records (``shown``: display names)."""
        check_limits(shapes, path)
        for key, (shape, _) in shapes.items():
            if tuple(shape) != self.expected[key]:
                name = (shown or {}).get(key, key)
                raise ValueError(
                    f"{path!r}: array {name!r} declares shape {tuple(shape)}, but the header's "
                    f"layer record calls for {self.expected[key]}."
                )

    def build(self, arrays, activation, path):
        layers = build_layers(self.nodes, arrays, path)
        return ReLUGenerator.from_layers(layers, output_activation=activation)
