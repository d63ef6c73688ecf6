"""The walk of :func:`skinvert.io.from_torch`: torch modules -> generator layers.

Tracks the per-sample shape through the network, gathers the linear maps
between two ReLUs (Linear, Conv2d, ConvTranspose2d, Flatten / Unflatten,
nearest Upsample) into one layer (a :class:`~skinvert.operators.Composite`
when there are several), and folds eval-mode batch-norm into the linear map
before it (per output channel for a convolution). torch is imported by the
caller; this module only reads the modules' attributes and tensors.
"""

import math

import numpy as np

from ..operators import Composite, Conv2d, ConvTranspose2d, Dense, Reshape, Upsample

__all__ = ["Builder"]

_PARAMETRIC = (Dense, Conv2d, ConvTranspose2d)


def _recast(op, dtype):
    """The same op with its parameters in ``dtype``."""
    if isinstance(op, Dense):
        return Dense(op.weight.astype(dtype), op.bias.astype(dtype))
    if isinstance(op, (Conv2d, ConvTranspose2d)):
        return type(op)(op.weight.astype(dtype), op.channel_bias.astype(dtype), **op._config())
    return op


def _block_corner(values, up):
    """Per-element ``values`` of an Upsample's output, read back at its input pixels."""
    (c, h, w), (sh, sw) = up.in_shape, up.scale_factor
    return values.reshape(c, h, sh, w, sw)[:, :, 0, :, 0].reshape(-1)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class Builder:
    """State of the walk: the closed layers, the open group, the current shape."""

    def __init__(self, torch, in_shape, host):
        self.nn = torch.nn
        self.torch = torch
        self.host = host
        self.shape = None if in_shape is None else tuple(int(s) for s in in_shape)
        self.layers = []  # closed generator layers (between ReLUs)
        self.ops = []  # the open group of linear maps
        self.bn_ok = False  # a batch-norm may follow (right after a linear map)
        self.state = "start"  # "start" | "open" | "closed" (after ReLU) | "end"
        self.activation = "identity"
        self.final = None
        self.dtypes = []

    # -- helpers ---------------------------------------------------------------
    def _has_linear(self):
        return any(isinstance(op, _PARAMETRIC) for op in self.ops)

    def _need_shape(self, where, what):
        raise ValueError(
            f"{where} starts the network, so its input shape is unknown: pass "
            f"from_torch(module, in_shape={what})."
        )

    def _push(self, op, parametric):
        self.ops.append(op)
        self.shape = op.out_shape
        if parametric:
            self.state, self.bn_ok = "open", True

    def _params(self, layer, where):
        w = layer.weight
        if not w.dtype.is_floating_point:
            raise TypeError(f"{where} has non-float weights ({w.dtype}).")
        self.dtypes.append(w.dtype)
        W = self.host(w).astype(np.float64)
        b = None if layer.bias is None else self.host(layer.bias).astype(np.float64)
        return W, b

    # -- modules -------------------------------------------------------------
    def linear(self, layer, where):
        W, b = self._params(layer, where)
        n_in = W.shape[1]
        if self.shape is None:
            self.shape = (n_in,)
        if len(self.shape) != 1:
            raise ValueError(
                f"{where} gets per-sample shape {self.shape}: insert nn.Flatten() before it "
                "(torch's Linear would act on the last axis only)."
            )
        if self.shape[0] != n_in:
            raise ValueError(
                f"{where} expects inputs of size {n_in} but the previous layer outputs size "
                f"{self.shape[0]}."
            )
        self._push(Dense(W, b), True)

    def conv(self, layer, where, transposed):
        W, b = self._params(layer, where)
        if layer.groups != 1 or _pair(layer.dilation) != (1, 1):
            raise ValueError(f"{where}: skinvert supports groups=1 and dilation=1 only.")
        if getattr(layer, "padding_mode", "zeros") != "zeros":
            raise ValueError(f"{where}: only padding_mode='zeros' is supported.")
        if isinstance(layer.padding, str):
            raise ValueError(f"{where}: padding={layer.padding!r} is not supported; give "
                             "the padding as integers.")
        c_in = layer.in_channels
        if self.shape is None:
            self._need_shape(where, f"({c_in}, H, W)")
        if len(self.shape) != 3 or self.shape[0] != c_in:
            hint = " insert nn.Unflatten(1, (C, H, W)) before it;" if len(self.shape) == 1 else ""
            raise ValueError(
                f"{where} takes {c_in} input channels (C, H, W) but gets per-sample shape "
                f"{self.shape}:{hint} check the previous layers or in_shape."
            )
        kw = {"in_shape": self.shape, "stride": _pair(layer.stride),
              "padding": _pair(layer.padding)}
        if transposed:
            op = ConvTranspose2d(W, b, output_padding=_pair(layer.output_padding), **kw)
        else:
            op = Conv2d(W, b, **kw)
        self._push(op, True)

    def reshape(self, out_shape, where):
        if self.state == "end":  # after phi: an elementwise map commutes with reshapes
            self.shape = out_shape
            return
        self._push(Reshape(self.shape, out_shape), False)

    def flatten(self, layer, where):
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise TypeError(
                f"from_torch supports {where} only with start_dim=1, end_dim=-1 (one "
                f"sample per row), got start_dim={layer.start_dim}, end_dim={layer.end_dim}."
            )
        if self.shape is None:
            self._need_shape(where, "(C, H, W)")
        self.reshape((math.prod(self.shape),), where)

    def unflatten(self, layer, where):
        size = tuple(int(s) for s in layer.unflattened_size)
        if self.shape is None:
            self.shape = (math.prod(size),)
        if layer.dim not in (1, -1) or len(self.shape) != 1 or -1 in size:
            raise TypeError(
                f"from_torch supports {where} only on flat samples (dim=1) with explicit "
                f"sizes; it gets per-sample shape {self.shape} and unflattened_size={size}."
            )
        if math.prod(size) != self.shape[0]:
            raise ValueError(f"{where} unflattens {self.shape[0]} values to {size}.")
        self.reshape(size, where)

    def upsample(self, layer, where):
        if layer.mode != "nearest":
            raise TypeError(f"from_torch supports {where} only with mode='nearest', got "
                            f"mode={layer.mode!r}.")
        if self.shape is None:
            self._need_shape(where, "(C, H, W)")
        if len(self.shape) != 3:
            raise ValueError(f"{where} needs (C, H, W) samples, got {self.shape}.")
        if layer.scale_factor is not None:
            scale = _pair(layer.scale_factor)
        else:
            size = _pair(layer.size)
            scale = tuple(s / h for s, h in zip(size, self.shape[1:], strict=True))
        if not all(float(s).is_integer() and s >= 1 for s in scale):
            raise ValueError(f"{where}: only integer scale factors are supported, got {scale}.")
        op = Upsample(tuple(int(s) for s in scale), self.shape)
        if self.state == "end":
            raise TypeError(f"{where} follows the output activation: hidden activations must "
                            "be ReLU and the output activation must be the last layer.")
        self._push(op, False)

    def batchnorm(self, layer, where):
        if not (self.state == "open" and self.bn_ok):
            raise ValueError(
                f"{where} must directly follow a Linear, Conv2d or ConvTranspose2d (Flatten, "
                "Unflatten or Upsample may sit between), whose weights and bias it is folded "
                "into."
            )
        if layer.training:
            raise ValueError(
                f"{where} is in training mode: it normalizes with batch statistics, so it "
                "is not a fixed linear map. Call module.eval() before from_torch."
            )
        if layer.running_mean is None or layer.running_var is None:
            raise ValueError(
                f"{where} has no running statistics (track_running_stats=False), so it "
                "normalizes with batch statistics even in eval mode."
            )
        C = self.shape[0]
        if layer.num_features != C:
            raise ValueError(
                f"{where} has {layer.num_features} features but the layer before it outputs "
                f"{C} {'channels' if len(self.shape) > 1 else 'features'} (shape {self.shape})."
            )
        mu = self.host(layer.running_mean).astype(np.float64)
        var = self.host(layer.running_var).astype(np.float64)
        g = self.host(layer.weight).astype(np.float64) if layer.affine else np.ones(C)
        be = self.host(layer.bias).astype(np.float64) if layer.affine else np.zeros(C)
        s = g / np.sqrt(var + float(layer.eps))
        t = be - s * mu
        # per element of the current shape (channel-first), then back through
        # the reshapes and upsamplings to the linear map's output
        rest = math.prod(self.shape) // C
        s_el, t_el = np.repeat(s, rest), np.repeat(t, rest)
        k = max(i for i, op in enumerate(self.ops) if isinstance(op, _PARAMETRIC))
        for op in reversed(self.ops[k + 1:]):
            if isinstance(op, Upsample):  # channel-wise values: one pixel per block
                s_el, t_el = _block_corner(s_el, op), _block_corner(t_el, op)
        self.ops[k] = self._fold(self.ops[k], s_el, t_el, where)
        self.bn_ok = False

    def _fold(self, op, s, t, where):
        if isinstance(op, Dense):
            return Dense(s[:, None] * op.weight, s * op.bias + t)
        c = op.out_shape[0]
        s2, t2 = s.reshape(c, -1), t.reshape(c, -1)
        if not (np.all(s2 == s2[:, :1]) and np.all(t2 == t2[:, :1])):
            raise ValueError(
                f"{where} normalizes features that mix the channels of the {type(op).__name__} "
                "before it, so it cannot be folded into that convolution."
            )
        s, t = s2[:, 0], t2[:, 0]
        axis = 0 if isinstance(op, Conv2d) else 1
        shape = [1, 1, 1, 1]
        shape[axis] = c
        return type(op)(op.weight * s.reshape(shape), s * op.channel_bias + t, **op._config())

    def relu(self, where):
        if self.state != "open":
            raise ValueError(
                f"{where} must follow a Linear, Conv2d or ConvTranspose2d (or its "
                "BatchNorm)."
            )
        self._close()
        self.state, self.bn_ok = "closed", False

    def output_activation(self, activation, where):
        if self.state != "open":
            raise ValueError(
                f"{where} is an output activation and must follow the last linear map (or its "
                "BatchNorm); hidden activations must be ReLU."
            )
        self.activation, self.final, self.state = activation, where, "end"

    def after_end(self, where):
        raise TypeError(
            f"{where} follows the output activation ({self.final}): hidden activations must "
            "be ReLU, and the output activation must be the last layer."
        )

    def _close(self):
        ops = self.ops
        self.layers.append(ops[0] if len(ops) == 1 else Composite(ops))
        self.ops = []

    def finish(self, torch):
        if self.state == "start" and not self.layers:
            raise ValueError("from_torch found no Linear or convolution layer in the module.")
        if self.state in ("closed", "start"):
            raise ValueError(
                "The module ends with a ReLU: the output layer must be a linear map "
                "followed by an invertible activation (Tanh, Sigmoid, Identity, LeakyReLU "
                "or PLU)."
            )
        self._close()
        dtype = np.float64 if torch.float64 in self.dtypes else np.float32
        layers = []
        for layer in self.layers:
            if isinstance(layer, Composite):
                layer = Composite([_recast(op, dtype) for op in layer.layers])
            layers.append(_recast(layer, dtype))
        return layers
