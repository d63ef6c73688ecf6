"""Shape layers: nearest-neighbour Upsample, Reshape (flatten / unflatten), and Composite.

Linear maps with no ReLU after them, so a generator chains them with the
next linear layer into one layer of the paper's eq. 3 (e.g. ``Upsample`` then
``Conv2d``, or ``Dense`` then ``Reshape`` to an image). Samples are stored
channel-first and flattened in C order, one per row, as for every layer.
"""

import itertools
import math

import numpy as np

from .._array_api import as_namespace
from ._conv import (
    MAX_DENSE_ELEMENTS,
    _check_shape,
    _ConfigEq,
    _dense_by_columns,
    _LayerBase,
    _pair,
)

__all__ = ["Composite", "Reshape", "Upsample"]


class Upsample(_ConfigEq, _LayerBase):
    """Nearest-neighbour upsampling by integer factors (torch's ``nn.Upsample(mode="nearest")``).

    Parameters
    ----------
    scale_factor : int or pair of ints
    in_shape : tuple of 3 ints
        ``(C, H, W)``; ``out_shape = (C, H s_h, W s_w)``.

    Notes
    -----
    ``matmat`` copies each pixel to its ``s_h x s_w`` block (one ``take``);
    ``rmatmat`` sums each block. No bias.
    """

    def __init__(self, scale_factor, in_shape, *, mode="nearest"):
        if mode != "nearest":
            raise ValueError(f"Upsample supports mode='nearest' only, got {mode!r}.")
        vals = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * 2
        if all(isinstance(v, float) and v.is_integer() for v in vals):
            vals = tuple(int(v) for v in vals)
        self.scale_factor = _pair(tuple(vals), "scale_factor", 1)
        C, H, W = _check_shape(in_shape, "in_shape", 3)
        sh, sw = self.scale_factor
        self._set_common((C, H, W), (C, H * sh, W * sw), None, np.float64)
        rows = np.arange(H * sh) // sh
        cols = np.arange(W * sw) // sw
        idx = (np.arange(C)[:, None, None] * H + rows[None, :, None]) * W + cols[None, None, :]
        self._index = idx.reshape(-1)

    def parameters(self):
        return {}

    def _config(self):
        return {"scale_factor": self.scale_factor, "in_shape": self.in_shape}

    def _bind(self, xp, dtype, device):
        self._index = as_namespace(self._index, xp, device=device)

    def matmat(self, X):
        self._require_bound()
        return self.xp.take(X, self._index, axis=1)

    def rmatmat(self, R):
        self._require_bound()
        (C, H, W), (sh, sw) = self.in_shape, self.scale_factor
        blocks = self.xp.reshape(R, (R.shape[0], C, H, sh, W, sw))
        return self.xp.reshape(self.xp.sum(blocks, axis=(3, 5)), (R.shape[0], self.n_in))

    def to_dense(self, max_elements=MAX_DENSE_ELEMENTS):
        return _dense_by_columns(self, max_elements)

    def __getstate__(self):
        return self._config()

    def __setstate__(self, state):
        self.__init__(**state)


class Reshape(_ConfigEq, _LayerBase):
    """Flatten / unflatten: the identity on flattened rows; only the shapes change.

    Parameters
    ----------
    in_shape, out_shape : tuple of ints
        Same number of elements (e.g. ``(3136,)`` and ``(64, 7, 7)``, as
        torch's ``nn.Unflatten(1, (64, 7, 7))``).
    """

    def __init__(self, in_shape, out_shape):
        in_shape = _check_shape(in_shape, "in_shape")
        out_shape = _check_shape(out_shape, "out_shape")
        if math.prod(in_shape) != math.prod(out_shape):
            raise ValueError(f"Reshape cannot map in_shape={in_shape} "
                             f"({math.prod(in_shape)} values) to out_shape={out_shape} "
                             f"({math.prod(out_shape)} values).")
        self._set_common(in_shape, out_shape, None, np.float64)

    def parameters(self):
        return {}

    def _config(self):
        return {"in_shape": self.in_shape, "out_shape": self.out_shape}

    def _bind(self, xp, dtype, device):
        pass

    def matmat(self, X):
        self._require_bound()
        return X

    def rmatmat(self, R):
        self._require_bound()
        return R

    def to_dense(self, max_elements=MAX_DENSE_ELEMENTS):
        return _dense_by_columns(self, max_elements)

    def __getstate__(self):
        return self._config()

    def __setstate__(self, state):
        self.__init__(**state)


class Composite(_ConfigEq, _LayerBase):
    """Linear layers chained with nothing between them, as one layer.

    ``forward(x) = L_k(... L_2(L_1 x + b_1) + b_2 ...) + b_k``, so the
    composite's linear part is ``A_k ... A_1`` and its bias
    ``b = A_k (... (A_2 b_1 + b_2) ...) + b_k`` (computed once, on the host).

    Parameters
    ----------
    layers : sequence of layers
        Each one's ``out_shape`` equals the next one's ``in_shape`` (insert a
        :class:`Reshape` between a dense and an image layer).
    """

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("Composite needs at least one layer.")
        for i, layer in enumerate(layers):
            if not all(hasattr(layer, a) for a in ("in_shape", "out_shape", "to_namespace")):
                raise TypeError(f"Composite: item {i} ({type(layer).__name__}) is not a layer.")
            if layer.xp is not None:
                raise ValueError(f"Composite: item {i} is a bound layer; pass host layers.")
        for i, (a, b) in enumerate(itertools.pairwise(layers)):
            if a.out_shape != b.in_shape:
                raise ValueError(
                    f"Composite: layer {i} ({type(a).__name__}) outputs shape {a.out_shape} "
                    f"but layer {i + 1} ({type(b).__name__}) takes {b.in_shape}; insert a "
                    "Reshape between them.")
        self.layers = tuple(layers)
        dtype = np.result_type(*[layer.dtype for layer in layers
                                 if not isinstance(layer, (Reshape, Upsample))] or [np.float64])
        bias = np.zeros((1, layers[0].n_in))
        for layer in layers:
            bias = layer.to_namespace(np, dtype=np.float64).forward(bias)
        self._set_common(layers[0].in_shape, layers[-1].out_shape, bias[0], dtype)

    def parameters(self):
        return {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.parameters().items()}

    def _config(self):
        return tuple((type(layer).__name__, getattr(layer, "_config", dict)())
                     for layer in self.layers)

    def _bind(self, xp, dtype, device):
        self.layers = tuple(layer.to_namespace(xp, dtype=dtype, device=device)
                            for layer in self.layers)

    def matmat(self, X):
        self._require_bound()
        for layer in self.layers:
            X = layer.matmat(X)
        return X

    def rmatmat(self, R):
        self._require_bound()
        for layer in reversed(self.layers):
            R = layer.rmatmat(R)
        return R

    def to_dense(self, max_elements=MAX_DENSE_ELEMENTS):
        return _dense_by_columns(self, max_elements)

    def __getstate__(self):
        return {"layers": self.layers}

    def __setstate__(self, state):
        self.__init__(state["layers"])

    def __repr__(self):
        return f"Composite({', '.join(repr(layer) for layer in self.layers)})"
