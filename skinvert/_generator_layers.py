"""Checks and descriptions of the layer sequence of a generator (any Layer subclass).

Kept apart from :mod:`skinvert.generator` so that the model class stays
small; nothing here imports the estimators.
"""

import numpy as np

from .operators import Dense, Layer
from .operators._dense import check_bias, check_scale, check_weight

__all__ = [
    "MAX_DENSE_ENTRIES",
    "check_compute_dtype",
    "check_layer_values",
    "check_layers",
    "dense_layers",
    "describe_layer",
    "layerwise_obstacle",
    "too_large_for_dense",
]

#: Largest ``n_out * n_in`` a layer may have for :attr:`ReLUGenerator.weights`
#: to build its dense matrix (512 MiB in float64).
MAX_DENSE_ENTRIES = 2**26


def has_parameters(layer):
    """False for the parameter-free shape layers (Reshape, Upsample, or a Composite of them)."""
    return bool(layer.parameters())


def check_layers(layers):
    """Validate a sequence of Layer objects: chained sizes, one dtype; returns a list."""
    if isinstance(layers, Layer) or not hasattr(layers, "__len__"):
        raise TypeError(
            f"layers must be a sequence of Layer objects, got {type(layers).__name__}."
        )
    layers = list(layers)
    if len(layers) == 0:
        raise ValueError("layers must hold at least one layer.")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"layers[{i}] must be a skinvert.operators.Layer, got {type(layer).__name__}."
            )
        if layer.xp is not None:
            raise ValueError(f"layers[{i}] is bound to a namespace: pass the host layer.")
    for i in range(1, len(layers)):
        if layers[i].shape[1] != layers[i - 1].shape[0]:
            raise ValueError(
                f"layers do not chain: layers[{i}] has shape {layers[i].shape} (n_out, n_in), "
                f"so it expects an input of size {layers[i].shape[1]}, but layers[{i - 1}] "
                f"has shape {layers[i - 1].shape} and outputs size {layers[i - 1].shape[0]}."
            )
    # Reshape / Upsample hold no parameters: their nominal dtype does not count.
    dtypes = {layer.dtype for layer in layers if has_parameters(layer)}
    if len(dtypes) > 1:
        raise ValueError(
            f"layers have different dtypes {sorted(d.name for d in dtypes)}: cast them to one."
        )
    return layers


def check_layer_values(layers):
    """Refuse badly scaled weights and non-finite biases (the checks of a new generator)."""
    for i, layer in enumerate(layers):
        for key, value in layer.parameters().items():
            if key.rsplit(".", 1)[-1] != "bias":
                check_scale(value, layer.dtype, f"layers[{i}].{key}")
            elif not np.all(np.isfinite(value)):
                raise ValueError(f"layers[{i}].{key} holds non-finite values.")
        if not np.all(np.isfinite(layer.bias)):
            raise ValueError(f"layers[{i}].bias holds non-finite values.")


def describe_layer(i, layer):
    """``"layers[2] (ConvTranspose2d, (32, 14, 14) -> (1, 28, 28))"``, for messages."""
    return f"layers[{i}] ({type(layer).__name__}, {layer.in_shape} -> {layer.out_shape})"


def too_large_for_dense(layers, max_entries=MAX_DENSE_ENTRIES):
    """The index of the first layer whose dense matrix exceeds ``max_entries``, or None."""
    for i, layer in enumerate(layers):
        if layer.shape[0] * layer.shape[1] > max_entries:
            return i
    return None


def is_plain_dense(layer):
    return type(layer) is Dense


def layerwise_obstacle(layers, max_entries=MAX_DENSE_ENTRIES):
    """Why a layer-by-layer inversion (Algorithms 2-5) cannot run, or None.

    The layer-wise pursuits recover ``x_i`` from ``x_{i+1}`` through the dense
    matrix of layer ``i`` (Corollary 1 needs ``s_i < (s_{i+1} + 1) / 2``). A
    layer that maps more units than it outputs cannot meet that at the
    typical half-active ReLU layer, and a layer whose dense matrix does not fit
    in memory cannot be posed at all.

    Returns
    -------
    message : str or None
        ``"layers[2] (ConvTranspose2d, ...) maps 6272 units to 784 outputs: its
        support cannot be recovered layer by layer"``; None if every layer
        expands (or keeps its size) and fits in memory.
    """
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        n_out, n_in = layer.shape
        if n_out * n_in > max_entries:
            return (
                f"{describe_layer(i, layer)} has a dense matrix of {n_out * n_in} entries, "
                f"above {max_entries}: its layer-wise problem does not fit in memory"
            )
        if n_in > n_out:
            return (
                f"{describe_layer(i, layer)} maps {n_in} units to {n_out} outputs: its "
                "support cannot be recovered layer by layer"
            )
    return None


def dense_layers(weights, biases):
    """Validated :class:`~skinvert.operators.Dense` layers from matrices and biases.

    The checks of ``ReLUGenerator(weights, biases)``: 2-D finite real
    matrices that chain, cast to one dtype, well scaled, biases of the right
    length (``None``: zeros).
    """
    if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__"):
        raise TypeError(
            "weights must be a sequence of 2-D arrays [W_0, ..., W_L], "
            f"got {type(weights).__name__}."
        )
    if len(weights) == 0:
        raise ValueError("weights must hold at least one matrix.")
    Ws = [check_weight(W, f"weights[{i}]") for i, W in enumerate(weights)]
    for i in range(1, len(Ws)):
        if Ws[i].shape[1] != Ws[i - 1].shape[0]:
            raise ValueError(
                f"weights do not chain: weights[{i}] has shape {Ws[i].shape}, "
                f"so it expects an input of size {Ws[i].shape[1]}, but "
                f"weights[{i - 1}] has shape {Ws[i - 1].shape} and outputs size "
                f"{Ws[i - 1].shape[0]}."
            )
    dtype = np.result_type(*Ws)
    Ws = [W if W.dtype == dtype else check_weight(W.astype(dtype)) for W in Ws]
    for i, W in enumerate(Ws):
        check_scale(W, dtype, f"weights[{i}]")
    if biases is None:
        biases = [None] * len(Ws)
    if isinstance(biases, np.ndarray) or len(biases) != len(Ws):
        raise ValueError(
            f"biases must be a sequence of {len(Ws)} vectors (or None), one per "
            "weight matrix."
        )
    bs = [
        check_bias(b, W.shape[0], dtype, f"biases[{i}]")
        for i, (W, b) in enumerate(zip(Ws, biases, strict=True))
    ]
    return [Dense._from_checked(W, b) for W, b in zip(Ws, bs, strict=True)]


def check_compute_dtype(layers, name):
    """Refuse host parameters that cannot be used in the compute dtype ``name``.

    Host weights of another dtype (float64 weights on float32 data) are
    refused if ``W^T W`` cannot be formed in ``name``, and biases that are
    not finite after the cast.
    """
    for i, layer in enumerate(layers):
        for key, value in layer.parameters().items():
            if key.rsplit(".", 1)[-1] == "bias":
                with np.errstate(over="ignore"):
                    if not np.all(np.isfinite(value.astype(name))):
                        raise ValueError(
                            f"biases[{i}] holds non-finite values after the cast to "
                            f"{name}: use {layer.dtype.name} data."
                        )
            else:
                what = f"weights[{i}]" if key == "weight" else f"layers[{i}].{key}"
                check_scale(value, name, what)
        if not has_parameters(layer):
            continue
        with np.errstate(over="ignore"):
            if not np.all(np.isfinite(layer.bias.astype(name))):
                raise ValueError(
                    f"biases[{i}] holds non-finite values after the cast to {name}: use "
                    f"{layer.dtype.name} data."
                )


class GeneratorState:
    """Pickle / joblib / skops state of :class:`~skinvert.generator.ReLUGenerator`.

    A fully connected generator keeps the layout of skinvert <= 0.1
    (``weights``, ``biases``), readable by every version; any other stores
    its host layers. Restored state is checked as a new generator is: shapes
    chain, values finite, arrays read-only copies (each layer validates its
    own state in its ``__setstate__``).
    """

    def __getstate__(self):
        if all(type(layer) is Dense for layer in self.layers):
            return {"weights": self.weights, "biases": self.biases, "activation": self.activation}
        return {"layers": list(self.layers), "activation": self.activation}

    def __setstate__(self, state):
        try:
            activation = state["activation"]
            layers = state["layers"] if "layers" in state else None
            if layers is None:
                weights, biases = state["weights"], state["biases"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "Cannot restore a ReLUGenerator: the saved state needs 'layers' (or "
                f"'weights' and 'biases') and 'activation', got {type(state).__name__}."
            ) from exc
        if layers is not None:
            layers = check_layers(layers)
            check_layer_values(layers)
        else:
            layers = dense_layers(weights, biases)
        self._set_layers(layers, activation)
