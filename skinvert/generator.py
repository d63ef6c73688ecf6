"""The fully connected ReLU generator of the paper (eq. 3).

    x_1 = ReLU(W_0 z + b_0),  x_{i+1} = ReLU(W_i x_i + b_i),  G(z) = phi(W_L x_L + b_L)

``W_i`` has shape ``(n_{i+1}, n_i)`` exactly as in the paper. Rows are samples
everywhere (scikit-learn layout): the forward map of a batch ``Z`` of shape
``(n_samples, n_0)`` is ``Z @ W_0.T + b_0``.
"""

import numbers

import numpy as np

from ._array_api import as_namespace, floating_dtype_of, namespace_of
from .activations import get_activation

__all__ = ["ReLUGenerator", "make_random_generator"]


def _check_matrix(W, i):
    try:
        W = np.asarray(W)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise TypeError(f"weights[{i}] could not be converted to an array: {exc}") from exc
    if W.dtype.kind not in "fiu" or W.dtype == np.bool_:
        raise TypeError(
            f"weights[{i}] must hold real numbers (float32 or float64), got dtype {W.dtype}."
        )
    if W.ndim != 2:
        raise ValueError(
            f"weights[{i}] must be a 2-D array of shape (n_{i + 1}, n_{i}), "
            f"got shape {W.shape}."
        )
    if 0 in W.shape:
        raise ValueError(f"weights[{i}] has an empty dimension: shape {W.shape}.")
    if not np.all(np.isfinite(W)):
        raise ValueError(f"weights[{i}] holds non-finite values (NaN or inf).")
    if not np.any(W):
        raise ValueError(
            f"weights[{i}] is all zeros: every layer after it is constant, so the "
            "generator cannot be inverted."
        )
    if W.dtype not in (np.float32, np.float64):
        W = W.astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):
        sq = float(np.sum(np.square(W.astype(np.float64))))
    if not (0.0 < sq < np.inf):
        # ||W||_F^2 out of float64 range: W^T W (the step bounds, the normal
        # equations of every inverter) would be inf or 0.
        raise ValueError(
            f"weights[{i}] is badly scaled (largest |entry| {float(np.max(np.abs(W))):.3g}): "
            "the sum of its squared entries overflows or underflows float64, so the "
            "generator cannot be inverted in floating point. Rescale the weights."
        )
    W = np.array(W, copy=True)
    W.setflags(write=False)
    return W


def _check_bias(b, i, n_out, dtype):
    if b is None:
        b = np.zeros(n_out, dtype=dtype)
    b = np.asarray(b)
    if b.dtype.kind not in "fiu" or b.dtype == np.bool_:
        raise TypeError(f"biases[{i}] must hold real numbers, got dtype {b.dtype}.")
    if b.shape != (n_out,):
        raise ValueError(
            f"biases[{i}] must have shape ({n_out},) to match weights[{i}] of "
            f"output size {n_out}, got shape {b.shape}."
        )
    if not np.all(np.isfinite(b)):
        raise ValueError(f"biases[{i}] holds non-finite values (NaN or inf).")
    b = np.array(b, dtype=dtype, copy=True)
    b.setflags(write=False)
    return b


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
        phi: ``"identity"``, ``"tanh"``, ``"sigmoid"``, ``"leaky_relu"`` or
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
        Ws = [_check_matrix(W, i) for i, W in enumerate(weights)]
        for i in range(1, len(Ws)):
            if Ws[i].shape[1] != Ws[i - 1].shape[0]:
                raise ValueError(
                    f"weights do not chain: weights[{i}] has shape {Ws[i].shape}, "
                    f"so it expects an input of size {Ws[i].shape[1]}, but "
                    f"weights[{i - 1}] has shape {Ws[i - 1].shape} and outputs size "
                    f"{Ws[i - 1].shape[0]}."
                )
        dtype = np.result_type(*Ws)
        Ws = [W.astype(dtype, copy=False) for W in Ws]
        for W in Ws:
            W.setflags(write=False)
        if biases is None:
            biases = [None] * len(Ws)
        if isinstance(biases, np.ndarray) or len(biases) != len(Ws):
            raise ValueError(
                f"biases must be a sequence of {len(Ws)} vectors (or None), one per "
                "weight matrix."
            )
        bs = [_check_bias(b, i, W.shape[0], dtype) for i, (W, b) in enumerate(zip(Ws, biases))]
        self.weights = Ws
        self.biases = bs
        self.activation = get_activation(output_activation)
        self.output_activation = self.activation.name

    # -- shapes -------------------------------------------------------------
    @property
    def layer_sizes(self):
        return [self.weights[0].shape[1]] + [W.shape[0] for W in self.weights]

    @property
    def n_latent(self):
        return self.weights[0].shape[1]

    @property
    def n_output(self):
        return self.weights[-1].shape[0]

    @property
    def n_layers(self):
        return len(self.weights) - 1

    @property
    def dtype(self):
        """The host dtype of the stored weights."""
        return self.weights[0].dtype

    def __repr__(self):
        act = self.activation
        a = act.name if not act.params() else (act.name, act.params())
        return f"ReLUGenerator(layer_sizes={self.layer_sizes}, output_activation={a!r})"

    # -- arrays in a namespace ---------------------------------------------
    def as_arrays(self, xp, *, dtype, device=None):
        """The weights and biases as ``xp`` arrays of ``dtype`` on ``device``.

        Returns
        -------
        weights, biases : list of arrays
        """
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
        Ws, bs = self.as_arrays(xp, dtype=dtype, device=dev)
        hidden = []
        x = Z
        for W, b in zip(Ws[:-1], bs[:-1]):
            x = xp.clip(x @ W.T + b, min=0.0)
            hidden.append(x)
        X = self.activation(x @ Ws[-1].T + bs[-1], xp)
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

        See :func:`skinvert.load_generator`. No pickles are written.
        """
        from .io import save_generator

        save_generator(self, path)

    def __eq__(self, other):
        if not isinstance(other, ReLUGenerator):
            return NotImplemented
        return (
            self.activation == other.activation
            and len(self.weights) == len(other.weights)
            and all(np.array_equal(a, b) for a, b in zip(self.weights, other.weights))
            and all(np.array_equal(a, b) for a, b in zip(self.biases, other.biases))
        )

    __hash__ = None

    # -- pickle / joblib / skops ------------------------------------------------
    def __setstate__(self, state):
        # Unpickled (joblib) or skops-loaded state is checked as a new
        # generator is: shapes chain, values finite, arrays read-only copies.
        try:
            weights, biases = state["weights"], state["biases"]
            activation = state["activation"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "Cannot restore a ReLUGenerator: the saved state needs 'weights', "
                f"'biases' and 'activation', got {type(state).__name__}."
            ) from exc
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
    from sklearn.utils import check_random_state

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
