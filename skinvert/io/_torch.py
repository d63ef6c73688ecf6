"""Import a trained PyTorch generator: ``from_torch(module) -> ReLUGenerator``.

torch is an optional dependency (``pip install skinvert[torch]``): this module
never imports it at import time, so ``import skinvert`` stays torch-free. The
:class:`PLU` module is built on first access (``skinvert.io._torch.PLU``).

Supported layers, in an ``nn.Sequential`` (nested ones are flattened), or in a
module exposing exactly one ``nn.Sequential`` child:

- ``nn.Linear`` (with or without bias): one weight matrix ``W_i`` (torch's
  ``Linear.weight`` already has the paper's shape ``(n_{i+1}, n_i)``);
- ``nn.BatchNorm1d`` in eval mode, directly after a ``Linear``: folded into
  that linear map (see :func:`fold_batchnorm`);
- ``nn.ReLU`` after each hidden linear map;
- a final activation after the last linear map: ``nn.Tanh``, ``nn.Sigmoid``,
  ``nn.Identity`` (or nothing), ``nn.LeakyReLU`` or :class:`PLU`;
- ``nn.Identity`` anywhere (a no-op).

Anything else raises a ``TypeError`` naming the module's class and position.
"""

import numpy as np

from ..generator import ReLUGenerator

__all__ = ["PLU", "fold_batchnorm", "from_torch"]  # noqa: F822 - PLU: module __getattr__

_PLU_CLASS = None


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed in CI
        raise ImportError(
            "skinvert.io.from_torch needs PyTorch: `pip install skinvert[torch]`."
        ) from exc
    return torch


def _make_plu_class():
    torch = _import_torch()

    class PLU(torch.nn.Module):
        """Piecewise linear unit (Nicolae, 2018), the paper's output activation.

        ``plu(u) = max(alpha (u + c) - c, min(alpha (u - c) + c, u))``: slope 1
        on ``[-c, c]`` and slope ``alpha`` outside. Same definition as
        :class:`skinvert.Activation` ``("plu", {"slope": alpha, "c": c})``.

        Parameters
        ----------
        alpha : float, default=0.1
            Slope outside the band ``[-c, c]`` (> 0, so PLU is invertible).
        c : float, default=1.0
            Half-width of the unit-slope band.
        """

        def __init__(self, alpha=0.1, c=1.0):
            super().__init__()
            alpha, c = float(alpha), float(c)
            if not alpha > 0:
                raise ValueError(f"PLU needs alpha > 0 to be invertible, got {alpha}.")
            if not c > 0:
                raise ValueError(f"PLU needs c > 0, got {c}.")
            self.alpha = alpha
            self.c = c

        def forward(self, u):
            a, c = self.alpha, self.c
            return torch.maximum(a * (u + c) - c, torch.minimum(a * (u - c) + c, u))

        def extra_repr(self):
            return f"alpha={self.alpha}, c={self.c}"

    PLU.__module__ = __name__
    PLU.__qualname__ = "PLU"
    return PLU


def _plu_class():
    global _PLU_CLASS
    if _PLU_CLASS is None:
        _PLU_CLASS = _make_plu_class()
    return _PLU_CLASS


def __getattr__(name):
    # ``from skinvert.io._torch import PLU`` builds the torch class lazily.
    if name == "PLU":
        return _plu_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_plu(module):
    if isinstance(module, _plu_class()):
        return True
    # Duck typing for a user's own PLU module with the same parameters.
    return (
        type(module).__name__ == "PLU"
        and isinstance(getattr(module, "alpha", None), (int, float))
        and isinstance(getattr(module, "c", None), (int, float))
    )


def _flatten(module, torch, prefix=""):
    """``[(name, layer), ...]`` of a Sequential, nested Sequentials flattened."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if isinstance(child, torch.nn.Sequential):
            out.extend(_flatten(child, torch, prefix=full + "."))
        else:
            out.append((full, child))
    return out


def _find_sequential(module, torch):
    if isinstance(module, torch.nn.Sequential):
        return module
    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"from_torch expects a torch.nn.Module (an nn.Sequential or a module "
            f"holding one), got {type(module).__name__}."
        )
    seqs = [
        (name, child)
        for name, child in module.named_children()
        if isinstance(child, torch.nn.Sequential)
    ]
    if len(seqs) == 1:
        return seqs[0][1]
    if not seqs:
        raise TypeError(
            f"from_torch cannot read {type(module).__name__}: it is not an "
            "nn.Sequential and has no nn.Sequential attribute. Pass the "
            "nn.Sequential of Linear / BatchNorm1d / ReLU layers itself."
        )
    names = ", ".join(name for name, _ in seqs)
    raise TypeError(
        f"from_torch found several nn.Sequential attributes in "
        f"{type(module).__name__} ({names}); pass the generator's one explicitly."
    )


def _host(t):
    """A tensor as a host NumPy array; half precision (float16, bfloat16) as float32."""
    import torch

    t = t.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.numpy()


def fold_batchnorm(W, b, running_mean, running_var, eps, gamma=None, beta=None):
    """Fold an eval-mode batch-norm into the preceding linear map.

    Parameters
    ----------
    W : ndarray of shape (n_out, n_in)
    b : ndarray of shape (n_out,)
    running_mean, running_var : ndarray of shape (n_out,)
    eps : float
    gamma, beta : ndarray of shape (n_out,) or None
        The affine parameters (``None``: 1 and 0).

    Returns
    -------
    W_folded : ndarray of shape (n_out, n_in)
    b_folded : ndarray of shape (n_out,)

    Notes
    -----
    In eval mode ``BN(y) = gamma (y - mu) / sqrt(var + eps) + beta``; with
    ``y = W x + b`` and ``s = gamma / sqrt(var + eps)`` this is
    ``diag(s) W x + s (b - mu) + beta``. Computed in float64.
    """
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mu = np.asarray(running_mean, dtype=np.float64)
    var = np.asarray(running_var, dtype=np.float64)
    g = np.ones_like(mu) if gamma is None else np.asarray(gamma, dtype=np.float64)
    be = np.zeros_like(mu) if beta is None else np.asarray(beta, dtype=np.float64)
    s = g / np.sqrt(var + float(eps))
    return s[:, None] * W, s * (b - mu) + be


def _describe(name, layer):
    return f"{type(layer).__name__} at index {name}"


def from_torch(module):
    """Convert a trained fully connected PyTorch ReLU generator.

    Parameters
    ----------
    module : torch.nn.Module
        An ``nn.Sequential`` (nested ones are flattened) of ``Linear``
        (with or without bias), optional eval-mode ``BatchNorm1d`` right after
        a ``Linear``, ``ReLU`` after every hidden linear map, and a final
        activation ``Tanh``, ``Sigmoid``, ``Identity`` (or none),
        ``LeakyReLU`` or :class:`PLU`; or a module exposing exactly one such
        ``nn.Sequential`` as a child.

    Returns
    -------
    generator : ReLUGenerator
        Weights in the module's float dtype (float32 or float64; half
        precision becomes float32), batch-norm folded into weights and biases.
        ``generator.forward(z)`` equals ``module(z)`` in eval mode up to
        rounding.

    Raises
    ------
    TypeError
        For an unsupported layer (the message names its class and index), or
        an input that is not a module.
    ValueError
        For a batch-norm in training mode (call ``module.eval()``), without
        running statistics, or not right after a ``Linear``; for layers in an
        order that is not ``(Linear [BatchNorm1d] ReLU)* Linear [activation]``.

    Examples
    --------
    >>> import torch
    >>> from skinvert.io import from_torch
    >>> from skinvert.io._torch import PLU
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Linear(20, 128), torch.nn.BatchNorm1d(128), torch.nn.ReLU(),
    ...     torch.nn.Linear(128, 784), PLU(alpha=0.1, c=1.0))
    >>> G = from_torch(net.eval())
    >>> G.layer_sizes
    [20, 128, 784]
    """
    torch = _import_torch()
    nn = torch.nn

    seq = _find_sequential(module, torch)
    layers = _flatten(seq, torch)
    if not layers:
        raise ValueError("from_torch got an empty nn.Sequential.")

    weights, biases = [], []
    dtypes = []
    W = b = None  # the current (open) linear map
    state = "start"  # "start" | "linear" (after Linear[/BN]) | "closed" (after ReLU) | "end"
    bn_ok = False  # a BatchNorm1d may follow (directly after a Linear)
    activation = "identity"
    out_where = None  # the output activation seen, if any

    for pos, (name, layer) in enumerate(layers):
        where = _describe(name, layer)
        if state == "end" and not isinstance(layer, nn.Identity):
            if any(isinstance(later, nn.Linear) for _, later in layers[pos:]):
                then = "" if isinstance(layer, nn.Linear) else ", then a Linear"
                raise ValueError(
                    f"hidden activations must be ReLU: {out_where} is followed by {where}"
                    f"{then}, so it acts as a hidden activation. A "
                    "ReLU generator is (Linear [BatchNorm1d] ReLU)* Linear [BatchNorm1d] "
                    "[output activation], where only the output activation may be Tanh, "
                    "Sigmoid, LeakyReLU or PLU."
                )
            raise ValueError(
                f"{where} follows the output activation {out_where}; the output "
                "activation must be the last layer."
            )
        if isinstance(layer, nn.Linear):
            if state == "linear":
                raise ValueError(
                    f"{where} follows another Linear without a ReLU between them; "
                    "a ReLU generator alternates Linear [BatchNorm1d] ReLU."
                )
            if not layer.weight.dtype.is_floating_point:
                raise TypeError(f"{where} has non-float weights ({layer.weight.dtype}).")
            dtypes.append(layer.weight.dtype)
            W = _host(layer.weight).astype(np.float64)
            b = (
                np.zeros(W.shape[0])
                if layer.bias is None
                else _host(layer.bias).astype(np.float64)
            )
            if weights and W.shape[1] != weights[-1].shape[0]:
                raise ValueError(
                    f"{where} expects inputs of size {W.shape[1]} but the previous "
                    f"Linear outputs size {weights[-1].shape[0]}."
                )
            state, bn_ok = "linear", True
        elif isinstance(layer, nn.BatchNorm1d):
            if not (state == "linear" and bn_ok):
                raise ValueError(
                    f"{where} must directly follow a Linear layer, whose weights and "
                    "bias it is folded into."
                )
            if layer.training:
                raise ValueError(
                    f"{where} is in training mode: it normalizes with batch "
                    "statistics, so it is not a fixed linear map. Call "
                    "module.eval() before from_torch."
                )
            if layer.running_mean is None or layer.running_var is None:
                raise ValueError(
                    f"{where} has no running statistics (track_running_stats=False), "
                    "so it normalizes with batch statistics even in eval mode."
                )
            if layer.num_features != W.shape[0]:
                raise ValueError(
                    f"{where} has {layer.num_features} features but the Linear before "
                    f"it outputs {W.shape[0]}."
                )
            gamma = _host(layer.weight) if layer.affine else None
            beta = _host(layer.bias) if layer.affine else None
            W, b = fold_batchnorm(
                W, b, _host(layer.running_mean), _host(layer.running_var), layer.eps,
                gamma, beta,
            )
            bn_ok = False
        elif isinstance(layer, nn.ReLU):
            if state != "linear":
                raise ValueError(
                    f"{where} must follow a Linear (or Linear then BatchNorm1d)."
                )
            weights.append(W)
            biases.append(b)
            W = b = None
            state, bn_ok = "closed", False
        elif isinstance(layer, nn.Identity):
            continue
        elif isinstance(layer, (nn.Tanh, nn.Sigmoid, nn.LeakyReLU)) or _is_plu(layer):
            if state != "linear":
                raise ValueError(
                    f"{where} is an output activation and must follow the last "
                    "Linear (or its BatchNorm1d); hidden layers must use ReLU."
                )
            if isinstance(layer, nn.Tanh):
                activation = "tanh"
            elif isinstance(layer, nn.Sigmoid):
                activation = "sigmoid"
            elif isinstance(layer, nn.LeakyReLU):
                activation = ("leaky_relu", {"slope": float(layer.negative_slope)})
            else:
                activation = ("plu", {"slope": float(layer.alpha), "c": float(layer.c)})
            state, out_where = "end", where
        else:
            raise TypeError(
                f"from_torch does not support {where} ({layer!r}); supported: "
                "Linear, BatchNorm1d (eval mode, after a Linear), ReLU (the only hidden "
                "activation), Identity and a final Tanh, Sigmoid, LeakyReLU or PLU."
            )

    if state == "start":
        raise ValueError("from_torch found no Linear layer in the module.")
    if state == "closed":
        raise ValueError(
            "The module ends with a ReLU: the output layer must be a Linear followed "
            "by an invertible activation (Tanh, Sigmoid, Identity, LeakyReLU or PLU)."
        )
    weights.append(W)
    biases.append(b)

    np_dtypes = [np.float64 if d == torch.float64 else np.float32 for d in dtypes]
    dtype = np.result_type(*np_dtypes)
    weights = [w.astype(dtype) for w in weights]
    biases = [v.astype(dtype) for v in biases]
    return ReLUGenerator(weights, biases, output_activation=activation)
