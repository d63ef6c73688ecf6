"""The ReLU generator of the paper (eq. 3), over any linear layers.

    x_1 = ReLU(W_0 z + b_0),  x_{i+1} = ReLU(W_i x_i + b_i),  G(z) = phi(W_L x_L + b_L)

``W_i`` has shape ``(n_{i+1}, n_i)`` exactly as in the paper, or is any
:class:`~skinvert.operators.Layer` (convolution, transposed convolution,
chained reshapes and upsampling) used through its batched ``matmat``. Rows
are samples everywhere (scikit-learn layout): the forward map of a batch
``Z`` of shape ``(n_samples, n_0)`` is ``Z @ W_0.T + b_0``.
"""


import numpy as np

from . import _file_format
from ._array_api import as_namespace, floating_dtype_of, namespace_of, relu
from ._generator_layers import (
    MAX_DENSE_ENTRIES,
    GeneratorState,
    check_compute_dtype,
    check_layer_values,
    check_layers,
    dense_layers,
    has_parameters,
    layerwise_obstacle,
    too_large_for_dense,
)
from .activations import get_activation
from .operators import Dense

__all__ = ["ReLUGenerator"]


class ReLUGenerator(GeneratorState):
    """A ReLU generator ``G(z) = phi(W_L x_L + b_L)`` (paper, eq. 3).

    Built from dense matrices here, or from any layers (convolutional ones
    included) with :meth:`from_layers`; :attr:`layers` holds them either way.

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
        layers = dense_layers(weights, biases)
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
        layers = check_layers(layers)
        check_layer_values(layers)
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
        """The host matrices ``[W_0, ..., W_L]`` (each layer's :meth:`to_dense`).

        Raises
        ------
        ValueError
            If a layer's dense matrix has more than ``MAX_DENSE_ENTRIES``
            entries (the message names the layer); use :attr:`layers` and
            their ``matmat`` / ``rmatmat`` instead.
        """
        i = too_large_for_dense(self.layers)
        if i is not None:
            layer = self.layers[i]
            raise ValueError(
                f"layers[{i}] ({type(layer).__name__}, shape {layer.shape}) is too large for a "
                f"dense matrix (per sample {layer.in_shape} -> {layer.out_shape}, over "
                f"{MAX_DENSE_ENTRIES} entries): use generator.layers and the layers' matmat / "
                "rmatmat instead of weights."
            )
        return [np.asarray(layer.to_dense(), dtype=self.dtype) for layer in self.layers]

    @property
    def is_dense(self):
        """True when every layer is a :class:`~skinvert.operators.Dense` matrix.

        The fully connected generator of the paper (eq. 3): the inverters may
        then work on :attr:`weights` directly. Otherwise (convolutions,
        reshapes) they must use the layer-generic kernels of
        :mod:`skinvert.algorithms._network`.
        """
        return all(type(layer) is Dense for layer in self.layers)

    def fits_dense(self, max_entries=MAX_DENSE_ENTRIES):
        """Whether every layer's dense matrix has at most ``max_entries`` entries.

        Parameters
        ----------
        max_entries : int, default=MAX_DENSE_ENTRIES
            The largest ``n_out * n_in`` allowed.

        Returns
        -------
        fits : bool
            True when :attr:`weights` can be built.
        """
        return too_large_for_dense(self.layers, max_entries) is None

    def layerwise_obstacle(self, max_entries=MAX_DENSE_ENTRIES):
        """Why layer-by-layer inversion (Algorithms 2-5) cannot work here, or None.

        Parameters
        ----------
        max_entries : int, default=MAX_DENSE_ENTRIES
            Largest dense matrix a layer-wise problem may build.

        Returns
        -------
        reason : str or None
            E.g. ``"layers[2] (ConvTranspose2d, (32, 14, 14) -> (1, 28, 28)) maps
            6272 units to 784 outputs: its support cannot be recovered layer by
            layer"``: a layer that contracts cannot meet Corollary 1
            (``s_i < (s_{i+1} + 1) / 2``) at typical supports, and one whose
            dense matrix is too large cannot be posed. None when every layer
            expands (or keeps its size) and fits.
        """
        return layerwise_obstacle(self.layers, max_entries)

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
        for layer in self.layers:
            if has_parameters(layer):
                return layer.dtype
        return self.layers[0].dtype

    def __repr__(self):
        act = self.activation
        a = act.name if not act.params() else (act.name, act.params())
        return f"ReLUGenerator(layer_sizes={self.layer_sizes}, output_activation={a!r})"

    # -- arrays in a namespace ---------------------------------------------
    def _check_compute_dtype(self, xp, dtype):
        name = "float32" if dtype == xp.float32 else "float64"
        if name not in self._scale_checked:
            check_compute_dtype(self.layers, name)
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
            x = relu(layer.forward(x), xp)
            hidden.append(x)
        X = self.activation(layers[-1].forward(x), xp)
        return (X, hidden) if return_hidden else X

    def supports(self, Z):
        """The supports ``S_i = {j : x_i[j] > 0}`` of every hidden layer.

        Parameters
        ----------
        Z : array of shape (n_samples, n_latent)
            Latent codes, one per row, in any array API namespace.

        Returns
        -------
        supports : list of bool arrays of shape (n_samples, n_i), i = 1..L
            The active units of each hidden layer of ``G(Z)``.
        """
        _, hidden = self.forward(Z, return_hidden=True)
        return [h > 0 for h in hidden]

    # -- files ----------------------------------------------------------------
    def save(self, path):
        """Write the generator to ``path`` (``.npz``, or ``.safetensors``).

        A fully connected generator is written in format version 1 (each
        layer's matrix and bias, readable by every skinvert version); any other
        (convolutions, reshapes, upsampling) in version 2, which stores each
        layer's type, configuration and parameters (kernels, not dense
        matrices). See :func:`skinvert.load_generator`. No pickles are written.

        Parameters
        ----------
        path : str, bytes or os.PathLike
            Ending in ``.npz`` or ``.safetensors``.
        """
        if self.is_dense:
            header = _file_format.make_header(len(self.layers), self.activation)
            arrays = _file_format.dense_arrays(self.weights, self.biases)
        else:
            header, arrays = _file_format.layers_header(self.layers, self.activation)
        _file_format.write(path, header, arrays)

    def __eq__(self, other):
        if not isinstance(other, ReLUGenerator):
            return NotImplemented
        return self.activation == other.activation and self.layers == other.layers

    __hash__ = None
