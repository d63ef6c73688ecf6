"""Convolutional layer operators: Conv2d and ConvTranspose2d (torch layouts).

Each is one linear map ``x -> A x + b`` of a generator (the paper's eq. 3 with
``W_i`` replaced by a convolution), on samples stored channel-first ``(C, H, W)``
and flattened in C order, one sample per row, exactly as torch's
``x.reshape(B, -1)``. ``A`` is never stored: a convolution keeps its kernel and
integer index arrays computed once on the host.

Both batched products (``matmat`` and its adjoint ``rmatmat``) are a gather
through precomputed integer indices (``xp.take``) and one ``xp.matmul``: im2col
for the direct convolution, sub-pixel phases or col2im for the transposed one,
see :mod:`skinvert.operators._conv_plans`. Only array API calls touch the data,
so NumPy, array-api-strict, torch and CuPy all work; results are exact to
rounding.

References
----------
Aberdam, Simon & Elad (2020), "When and how can deep generative models be
inverted?", eq. 3 (the generator these layers build).
"""


import numpy as np

from ._base import Layer as _LayerBase
from ._conv_plans import apply_plan, bind_plan, direct_plan, transposed_plan

__all__ = ["MAX_DENSE_ELEMENTS", "Conv2d", "ConvTranspose2d"]

#: Largest ``n_out * n_in`` that :meth:`to_dense` builds (512 MiB in float64).
MAX_DENSE_ELEMENTS = 2**26


def _readonly(array):
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


def _dense_by_columns(layer, max_elements):
    """``A`` as a NumPy matrix, from ``matmat`` on chunks of the identity."""
    n_out, n_in = layer.shape
    if n_out * n_in > max_elements:
        raise ValueError(
            f"{type(layer).__name__} maps {n_in} inputs to {n_out} outputs: its dense "
            f"matrix has {n_out * n_in} entries, above max_elements={max_elements}. "
            "Use matmat / rmatmat instead."
        )
    bound = layer.to_namespace(np, dtype=layer.dtype)
    A = np.empty((n_out, n_in), dtype=layer.dtype)
    step = 256
    for start in range(0, n_in, step):
        stop = min(n_in, start + step)
        E = np.zeros((stop - start, n_in), dtype=layer.dtype)
        E[np.arange(stop - start), np.arange(start, stop)] = 1
        A[:, start:stop] = bound.matmat(E).T
    return A


# -- argument checks ------------------------------------------------------------------
def _pair(value, name, minimum):
    vals = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(vals) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 for v in vals):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}.")
    if min(vals) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return tuple(int(v) for v in vals)


def _check_shape(shape, name, ndim=None):
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}.") from None
    if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                            for s in shape):
        raise TypeError(f"{name} must be a non-empty tuple of ints, got {shape!r}.")
    if min(shape) < 1:
        raise ValueError(f"{name} must hold positive sizes, got {shape!r}.")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must be (C, H, W) (3 entries), got {shape!r}.")
    return tuple(int(s) for s in shape)


def _check_weight(weight, bias, out_axis, what):
    weight = np.asarray(weight)
    if weight.dtype.kind not in "fiu" or weight.dtype == np.bool_:
        raise TypeError(f"{what} weight must hold real numbers, got dtype {weight.dtype}.")
    if weight.ndim != 4:
        raise ValueError(f"{what} weight must be 4-D, got shape {weight.shape}.")
    if 0 in weight.shape:
        raise ValueError(f"{what} weight has an empty dimension: shape {weight.shape}.")
    if weight.dtype not in (np.float32, np.float64):
        weight = weight.astype(np.float64)
    if not np.all(np.isfinite(weight)):
        raise ValueError(f"{what} weight holds non-finite values (NaN or inf).")
    n_bias = weight.shape[out_axis]
    if bias is None:
        bias = np.zeros(n_bias, dtype=weight.dtype)
    else:
        bias = np.asarray(bias)
        if bias.dtype.kind not in "fiu" or bias.dtype == np.bool_:
            raise TypeError(f"{what} bias must hold real numbers, got dtype {bias.dtype}.")
        if bias.shape != (n_bias,):
            raise ValueError(f"{what} bias must have shape ({n_bias},) (one per output "
                             f"channel), got {bias.shape}.")
        bias = bias.astype(weight.dtype)
        if not np.all(np.isfinite(bias)):
            raise ValueError(f"{what} bias holds non-finite values.")
    return _readonly(weight), _readonly(bias)


def _check_fixed(groups, dilation, what):
    if groups != 1:
        raise ValueError(f"{what} supports groups=1 only, got groups={groups!r}.")
    if _pair(dilation, "dilation", 1) != (1, 1):
        raise ValueError(f"{what} supports dilation=1 only, got dilation={dilation!r}.")


class _ConfigEq:
    """Equality also compares the layer's configuration (stride, padding, ...)."""

    def __eq__(self, other):
        base = super().__eq__(other)
        if base is NotImplemented or not base:
            return base
        return self._config() == other._config()

    __hash__ = None


class _ConvBase(_ConfigEq, _LayerBase):
    def _init_conv(self, weight, channel_bias, in_shape, out_shape, stride, padding, fwd, adj):
        self.weight, self.channel_bias = weight, channel_bias
        self.stride, self.padding = stride, padding
        n_pix = out_shape[1] * out_shape[2]
        self._set_common(in_shape, out_shape, np.repeat(channel_bias, n_pix), weight.dtype)
        self._fwd, self._adj = fwd, adj

    def parameters(self):
        """The host parameters: ``weight`` (torch layout) and the flattened ``bias``."""
        return {"weight": self.weight, "bias": self.bias}

    def _bind(self, xp, dtype, device):
        self._fwd = bind_plan(self._fwd, xp, dtype, device)
        self._adj = bind_plan(self._adj, xp, dtype, device)

    def matmat(self, X):
        """The linear part on a batch: ``X A^T``, (B, n_in) -> (B, n_out)."""
        self._require_bound()
        return apply_plan(self.xp, self._fwd, X, self.device)

    def rmatmat(self, R):
        """The adjoint on a batch: ``R A``, (B, n_out) -> (B, n_in)."""
        self._require_bound()
        return apply_plan(self.xp, self._adj, R, self.device)

    def to_dense(self, max_elements=MAX_DENSE_ELEMENTS):
        """The host matrix ``A`` of shape ``(n_out, n_in)`` (ValueError above ``max_elements``)."""
        return _dense_by_columns(self, max_elements)

    def __getstate__(self):
        return {"weight": self.weight, "bias": self.channel_bias, **self._config()}

    def __setstate__(self, state):
        state = dict(state)
        self.__init__(state.pop("weight"), state.pop("bias"), **state)

    def __repr__(self):
        cfg = ", ".join(f"{k}={v}" for k, v in self._config().items())
        return f"{type(self).__name__}(weight={self.weight.shape}, {cfg}, dtype={self.dtype.name})"


class Conv2d(_ConvBase):
    """A 2-D convolution ``x -> w * x + b`` as a layer operator (torch's ``nn.Conv2d``).

    Parameters
    ----------
    weight : array-like of shape (C_out, C_in, kh, kw)
        The kernel, as torch stores it (cross-correlation, no flip).
    bias : array-like of shape (C_out,), default=None
        One bias per output channel (zeros if None).
    in_shape : tuple of 3 ints
        ``(C_in, H, W)`` of one input sample.
    stride, padding : int or pair of ints, default=1 and 0
        Zero padding on both sides.
    groups, dilation : int, default=1
        Only 1 is supported (ValueError otherwise).

    Attributes
    ----------
    out_shape : tuple
        ``(C_out, H_out, W_out)``, ``H_out = (H + 2 p - kh) // s + 1``.
    bias : ndarray of shape (n_out,)
        The channel bias repeated over each channel's ``H_out W_out`` pixels.

    Notes
    -----
    ``matmat`` is one im2col gather and one matmul; ``rmatmat`` (the transposed
    convolution) gathers per sub-pixel phase, see the module docstring.
    """

    def __init__(self, weight, bias=None, *, in_shape, stride=1, padding=0, groups=1,
                 dilation=1):
        _check_fixed(groups, dilation, "Conv2d")
        weight, bias = _check_weight(weight, bias, 0, "Conv2d")
        in_shape = _check_shape(in_shape, "in_shape", 3)
        stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
        c_out, c_in, kh, kw = weight.shape
        if in_shape[0] != c_in:
            raise ValueError(f"Conv2d weight of shape {weight.shape} takes {c_in} input "
                             f"channels but in_shape={in_shape} has {in_shape[0]}.")
        H, W = in_shape[1:]
        if H + 2 * padding[0] < kh or W + 2 * padding[1] < kw:
            raise ValueError(f"Conv2d kernel {kh}x{kw} is larger than the padded input "
                             f"{H + 2 * padding[0]}x{W + 2 * padding[1]}.")
        out_hw = ((H + 2 * padding[0] - kh) // stride[0] + 1,
                  (W + 2 * padding[1] - kw) // stride[1] + 1)
        fwd = direct_plan(weight, (H, W), out_hw, stride, padding)
        adj = transposed_plan(weight, (H, W), out_hw, stride, padding)
        self._init_conv(weight, bias, in_shape, (c_out,) + out_hw, stride, padding, fwd, adj)

    def _config(self):
        return {"in_shape": self.in_shape, "stride": self.stride, "padding": self.padding}


class ConvTranspose2d(_ConvBase):
    """A 2-D transposed convolution as a layer operator (torch's ``nn.ConvTranspose2d``).

    Parameters
    ----------
    weight : array-like of shape (C_in, C_out, kh, kw)
        The kernel, as torch stores it.
    bias : array-like of shape (C_out,), default=None
    in_shape : tuple of 3 ints
        ``(C_in, H, W)``.
    stride, padding, output_padding : int or pair of ints, default=1, 0, 0
        ``output_padding < stride``.
    groups, dilation : int, default=1
        Only 1 is supported.

    Attributes
    ----------
    out_shape : tuple
        ``(C_out, H_out, W_out)``, ``H_out = (H - 1) s - 2 p + kh + output_padding``.

    Notes
    -----
    The map is the adjoint of ``Conv2d(weight, in_shape=out_shape, stride, padding)``:
    ``matmat`` runs the sub-pixel gather of the module docstring and
    ``rmatmat`` the convolution's im2col gather.
    """

    def __init__(self, weight, bias=None, *, in_shape, stride=1, padding=0, output_padding=0,
                 groups=1, dilation=1):
        _check_fixed(groups, dilation, "ConvTranspose2d")
        weight, bias = _check_weight(weight, bias, 1, "ConvTranspose2d")
        in_shape = _check_shape(in_shape, "in_shape", 3)
        stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
        output_padding = _pair(output_padding, "output_padding", 0)
        c_in, c_out, kh, kw = weight.shape
        if in_shape[0] != c_in:
            raise ValueError(f"ConvTranspose2d weight of shape {weight.shape} takes {c_in} "
                             f"input channels but in_shape={in_shape} has {in_shape[0]}.")
        if output_padding[0] >= stride[0] or output_padding[1] >= stride[1]:
            raise ValueError(f"output_padding={output_padding} must be smaller than "
                             f"stride={stride}.")
        H, W = in_shape[1:]
        out_hw = ((H - 1) * stride[0] - 2 * padding[0] + kh + output_padding[0],
                  (W - 1) * stride[1] - 2 * padding[1] + kw + output_padding[1])
        if min(out_hw) < 1:
            raise ValueError(f"ConvTranspose2d output size {out_hw} is not positive: padding "
                             f"{padding} is too large for kernel {kh}x{kw} on {H}x{W}.")
        self.output_padding = output_padding
        fwd = transposed_plan(weight, out_hw, (H, W), stride, padding)
        adj = direct_plan(weight, out_hw, (H, W), stride, padding)
        self._init_conv(weight, bias, in_shape, (c_out,) + out_hw, stride, padding, fwd, adj)

    def _config(self):
        return {"in_shape": self.in_shape, "stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding}
