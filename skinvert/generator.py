"""The fully connected ReLU generator of the paper (eq. 3).

    x_1 = ReLU(W_0 z + b_0),  x_{i+1} = ReLU(W_i x_i + b_i),  G(z) = phi(W_L x_L + b_L)

``W_i`` has shape ``(n_{i+1}, n_i)`` exactly as in the paper. Rows are samples
everywhere (scikit-learn layout): the forward map of a batch ``Z`` of shape
``(n_samples, n_0)`` is ``Z @ W_0.T + b_0``.
"""

import numbers

import numpy as np
from sklearn.utils import check_random_state

from . import _file_format
from ._array_api import as_namespace, floating_dtype_of, namespace_of
from .activations import get_activation
from .operators import Dense, Layer
from .operators._dense import check_bias, check_scale, check_weight

__all__ = ["ReLUGenerator", "make_random_generator"]

#: Largest ``n_out * n_in`` a layer may have for :attr:`ReLUGenerator.weights`
#: to build its dense matrix (512 MiB in float64).
MAX_DENSE_ENTRIES = 2**26


def _check_layers(layers):
    """Validate a sequence of Layer objects: chained sizes, one dtype, sane scale."""
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
    dtypes = {layer.dtype for layer in layers}
    if len(dtypes) > 1:
        raise ValueError(
            f"layers have different dtypes {sorted(d.name for d in dtypes)}: cast them to one."
        )
    return layers


class ReLUGenerator:
    """A fully connected ReLU generator ``G(z) = phi(W_L x_L + b_L)`` (paper, eq. 3).

    Parameters
    ----------
    weights : sequence of array-like of shape (n_{i+1}, n_i)
        The weight matrices ``W_0, ..., W_L``; consecutive shapes must chain
        (``weights[i + 1].shape[1] == weights[i].shape[0]``). Stored as
        read-only host (NumPy) copies in float32 or float64.
    biases : sequence of (array-like of shape (n_{i+1},) or None), default=None
        The biases ``b_0, ..., b_L`` (e.g. from folded batch-norm). ``None``
        means all zeros, as in the paper.
    output_activation : str, (str, dict) or Activation, default="tanh"
        The output activation phi: ``"identity"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu"`` or
        ``"plu"``; parameters as ``("plu", {"slope": 0.1, "c": 1.0})``. See
        :mod:`skinvert.activations` for how saturated outputs are handled.

    Attributes
    ----------
    layer_sizes : list of int
        ``[n_0, n_1, ..., n_L, n]``.
    n_latent : int
        ``n_0``, the size of z.
    n_output : int
        ``n``, the size of the signal.
    n_layers : int
        ``L``, the number of hidden (ReLU) layers.

    Examples
    --------
    >>> import numpy as np
    >>> from skinvert import make_random_generator
    >>> G = make_random_generator([20, 80, 200, 400], random_state=0)
    >>> Z = np.random.default_rng(0).standard_normal((5, 20))
    >>> X, hidden = G.forward(Z, return_hidden=True)
    >>> X.shape, [h.shape for h in hidden]
    ((5, 400), [(5, 80), (5, 200)])
    """

    def __init__(self, weights, biases=None, output_activation="tanh"):
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
        layers = [Dense._from_checked(W, b) for W, b in zip(Ws, bs, strict=True)]
        self._set_layers(layers, output_activation)

    @classmethod
    def from_layers(cls, layers, output_activation="tanh"):
        """A generator from a sequence of layers (paper, eq. 3, any linear layers).

        Parameters
        ----------
        layers : sequence of Layer
            Host layers ``A_0, ..., A_L`` (e.g. :class:`skinvert.operators.Dense`)
            whose flattened sizes chain (``layers[i + 1].shape[1] ==
            layers[i].shape[0]``) and share one dtype. ReLU acts between them.
        output_activation : str, (str, dict) or Activation, default="tanh"
            The output activation phi, as in :class:`ReLUGenerator`.

        Returns
        -------
        generator : ReLUGenerator
            The generator ``phi(A_L ReLU(... ReLU(A_0 z + b_0) ...) + b_L)``.
        """
        layers = _check_layers(layers)
        for i, layer in enumerate(layers):
            for key, value in layer.parameters().items():
                if key != "bias":
                    check_scale(value, layer.dtype, f"layers[{i}].{key}")
                elif not np.all(np.isfinite(value)):
                    raise ValueError(f"layers[{i}].bias holds non-finite values.")
        self = cls.__new__(cls)
        self._set_layers(layers, output_activation)
        return self

    def _set_layers(self, layers, output_activation):
        self.layers = list(layers)
        self.activation = get_activation(output_activation)
        self.output_activation = self.activation.name
        self._scale_checked = {self.dtype.name}

    # -- shapes -------------------------------------------------------------
    @property
    def weights(self):
        """The host matrices ``[W_0, ..., W_L]`` (each layer's :meth:`to_dense`)."""
        for i, layer in enumerate(self.layers):
            if layer.shape[0] * layer.shape[1] > MAX_DENSE_ENTRIES:
                raise ValueError(
                    f"layers[{i}] ({type(layer).__name__}, shape {layer.shape}) is too large "
                    f"for a dense matrix (over {MAX_DENSE_ENTRIES} entries): use "
                    "generator.layers and the layer's matmat / rmatmat instead of weights."
                )
        return [layer.to_dense() for layer in self.layers]

    @property
    def biases(self):
        """The host biases ``[b_0, ..., b_L]``."""
        return [layer.bias for layer in self.layers]

    @property
    def layer_sizes(self):
        return [self.layers[0].shape[1]] + [layer.shape[0] for layer in self.layers]

    @property
    def n_latent(self):
        return self.layers[0].shape[1]

    @property
    def n_output(self):
        return self.layers[-1].shape[0]

    @property
    def n_layers(self):
        return len(self.layers) - 1

    @property
    def dtype(self):
        """The host dtype of the stored weights."""
        return self.layers[0].dtype

    def __repr__(self):
        act = self.activation
        a = act.name if not act.params() else (act.name, act.params())
        return f"ReLUGenerator(layer_sizes={self.layer_sizes}, output_activation={a!r})"

    # -- arrays in a namespace ---------------------------------------------
    def _check_compute_dtype(self, xp, dtype):
        name = "float32" if dtype == xp.float32 else "float64"
        if name not in self._scale_checked:
            # Host weights of another dtype (float64 weights on float32 data):
            # refuse them if W^T W cannot be formed in the compute dtype.
            for i, layer in enumerate(self.layers):
                for key, value in layer.parameters().items():
                    if key == "bias":
                        with np.errstate(over="ignore"):
                            if not np.all(np.isfinite(value.astype(name))):
                                raise ValueError(
                                    f"biases[{i}] holds non-finite values after the cast to "
                                    f"{name}: use {self.dtype.name} data."
                                )
                    else:
                        check_scale(value, name, f"weights[{i}]")
            self._scale_checked.add(name)

    def bound_layers(self, xp, *, dtype, device=None):
        """The layers bound to ``xp`` (see :meth:`skinvert.operators.Layer.to_namespace`).

        Parameters
        ----------
        xp : namespace
            The data's array API namespace.
        dtype : floating dtype of ``xp``
            The compute dtype.
        device : device, default=None
            The data's device.

        Returns
        -------
        layers : list of Layer
            Bound copies of :attr:`layers`.

        Raises
        ------
        ValueError
            If the weights are badly scaled for ``dtype`` (e.g. float64
            weights near 1e40 used on float32 data).
        """
        self._check_compute_dtype(xp, dtype)
        return [layer.to_namespace(xp, dtype=dtype, device=device) for layer in self.layers]

    def as_arrays(self, xp, *, dtype, device=None):
        """The weights and biases as ``xp`` arrays of ``dtype`` on ``device``.

        Parameters
        ----------
        xp : namespace
            The data's array API namespace.
        dtype : floating dtype of ``xp``
            The compute dtype.
        device : device, default=None
            The data's device.

        Returns
        -------
        weights : list of arrays of shape (n_{i+1}, n_i)
            ``W_0, ..., W_L`` (dense; see :attr:`weights`).
        biases : list of arrays of shape (n_{i+1},)
            ``b_0, ..., b_L``.

        Raises
        ------
        ValueError
            If the weights are badly scaled for ``dtype``.
        """
        self._check_compute_dtype(xp, dtype)
        Ws = [as_namespace(W, xp, dtype=dtype, device=device) for W in self.weights]
        bs = [as_namespace(b, xp, dtype=dtype, device=device) for b in self.biases]
        return Ws, bs

    def _check_Z(self, Z):
        xp, dev = namespace_of(Z)
        if not hasattr(Z, "shape") or not hasattr(Z, "dtype"):
            Z = np.asarray(Z)
            xp, dev = namespace_of(Z)
        if len(Z.shape) != 2 or Z.shape[1] != self.n_latent:
            raise ValueError(
                f"Z must be a 2-D array of shape (n_samples, {self.n_latent}), got "
                f"shape {tuple(Z.shape)}."
            )
        dtype = floating_dtype_of(Z, xp)
        if Z.dtype != dtype:
            Z = xp.astype(Z, dtype)
        return Z, xp, dev, dtype

    # -- the model ------------------------------------------------------------
    def forward(self, Z, return_hidden=False):
        """Compute ``G(Z)`` for a batch of latent codes (eq. 3).

        Parameters
        ----------
        Z : array of shape (n_samples, n_latent)
            Latent codes, one per row, in any array API namespace.
        return_hidden : bool, default=False
            Also return the hidden layers ``[x_1, ..., x_L]``.

        Returns
        -------
        X : array of shape (n_samples, n_output)
            The signals, in Z's namespace, device and float dtype.
        hidden : list of arrays of shape (n_samples, n_i)
            Only with ``return_hidden=True``.
        """
        Z, xp, dev, dtype = self._check_Z(Z)
        layers = self.bound_layers(xp, dtype=dtype, device=dev)
        hidden = []
        x = Z
        for layer in layers[:-1]:
            x = xp.clip(layer.forward(x), min=0.0)
            hidden.append(x)
        X = self.activation(layers[-1].forward(x), xp)
        return (X, hidden) if return_hidden else X

    def supports(self, Z):
        """The supports ``S_i = {j : x_i[j] > 0}`` of every hidden layer.

        Returns
        -------
        supports : list of bool arrays of shape (n_samples, n_i), i = 1..L
        """
        _, hidden = self.forward(Z, return_hidden=True)
        return [h > 0 for h in hidden]

    # -- files ----------------------------------------------------------------
    def save(self, path):
        """Write the generator to ``path`` (``.npz``, or ``.safetensors``).

        Every layer is written as its dense matrix and bias. See
        :func:`skinvert.load_generator`. No pickles are written.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            Ending in ``.npz`` or ``.safetensors``.
        """
        header = _file_format.make_header(len(self.layers), self.activation)
        _file_format.write(path, header, self.weights, self.biases)

    def __eq__(self, other):
        if not isinstance(other, ReLUGenerator):
            return NotImplemented
        return self.activation == other.activation and self.layers == other.layers

    __hash__ = None

    # -- pickle / joblib / skops ------------------------------------------------
    def __getstate__(self):
        if all(type(layer) is Dense for layer in self.layers):
            # The layout of skinvert <= 0.1, readable by every version.
            return {"weights": self.weights, "biases": self.biases, "activation": self.activation}
        return {"layers": list(self.layers), "activation": self.activation}

    def __setstate__(self, state):
        # Unpickled (joblib) or skops-loaded state is checked as a new
        # generator is: shapes chain, values finite, arrays read-only copies.
        try:
            activation = state["activation"]
            layers = state["layers"] if "layers" in state else None
            if layers is None:
                weights, biases = state["weights"], state["biases"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "Cannot restore a ReLUGenerator: the saved state needs 'weights', "
                f"'biases' and 'activation', got {type(state).__name__}."
            ) from exc
        if layers is not None:
            restored = ReLUGenerator.from_layers(layers, output_activation=activation)
            self._set_layers(restored.layers, restored.activation)
        else:
            self.__init__(weights, biases, output_activation=activation)


def make_random_generator(layer_sizes, *, output_activation="tanh", random_state=None):
    """A generator with iid Gaussian weights, as in the paper's section 6.1.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_0, n_1, ..., n_L, n]``: the latent size, the hidden sizes and the
        signal size (at least two entries).
    output_activation : str, default="tanh"
        phi; see :class:`ReLUGenerator`.
    random_state : int, RandomState instance or None, default=None
        Seed of the weights.

    Returns
    -------
    generator : ReLUGenerator
        Zero biases; ``W_i`` with iid ``N(0, 2 / n_i)`` entries for the ReLU
        layers (He scaling: with ``z ~ N(0, I)`` every pre-activation has unit
        variance) and ``N(0, 1 / n_L)`` for the output layer, so tanh outputs
        of ``z ~ N(0, I)`` stay mostly unsaturated. The scaling does not change
        the supports, only the dynamic range: the paper's theory needs only iid
        Gaussian entries.
    """
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {layer_sizes!r}.")
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least two entries [n_0, n], got {sizes}.")
    for s in sizes:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1:
            raise ValueError(f"layer_sizes must hold positive integers, got {sizes}.")
    rng = check_random_state(random_state)
    weights = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        scale = np.sqrt((1.0 if last else 2.0) / n_in)
        weights.append(scale * rng.standard_normal((n_out, n_in)))
    return ReLUGenerator(weights, output_activation=output_activation)
