"""Import a trained PyTorch generator: ``from_torch(module, in_shape=None) -> ReLUGenerator``.

torch is an optional dependency (the ``torch`` extra:
``pip install -e ".[torch]"`` from the checkout): this module never imports
it at import time, so ``import skinvert`` stays torch-free. The
:class:`PLU` module is built on first access (``skinvert.io._torch.PLU``).

Supported layers, in an ``nn.Sequential`` (nested ones are flattened), or in a
module exposing exactly one ``nn.Sequential`` child:

- ``nn.Linear`` (with or without bias): a :class:`~skinvert.operators.Dense`
  layer (torch's ``Linear.weight`` already has the paper's shape
  ``(n_{i+1}, n_i)``);
- ``nn.Conv2d`` and ``nn.ConvTranspose2d`` (groups 1, dilation 1): the
  operators of the same name, in torch's kernel layouts;
- ``nn.Flatten`` / ``nn.Unflatten`` (a :class:`~skinvert.operators.Reshape`)
  and ``nn.Upsample(mode="nearest")``; the per-sample shape is tracked;
- ``nn.BatchNorm1d`` / ``nn.BatchNorm2d`` in eval mode after a linear map:
  folded into it (see :func:`fold_batchnorm`), per output channel for a
  convolution;
- ``nn.ReLU`` between the linear maps; maps without a ReLU between them
  form one :class:`~skinvert.operators.Composite` layer;
- a final activation after the last linear map: ``nn.Tanh``, ``nn.Sigmoid``,
  ``nn.Identity`` (or nothing), ``nn.LeakyReLU`` or :class:`PLU`;
- ``nn.Identity`` anywhere (a no-op).

Anything else raises a ``TypeError`` naming the module's class and position.
The walk itself is in :mod:`skinvert.io._torch_layers`.
"""

import numpy as np

from ..generator import ReLUGenerator
from ._torch_layers import Builder

__all__ = ["PLU", "fold_batchnorm", "from_torch"]  # noqa: F822 - PLU: module __getattr__

_PLU_CLASS = None


def _import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is installed in CI
        raise ImportError(
            "skinvert.io.from_torch needs PyTorch: `pip install torch` (or the ``torch`` extra)."
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


def from_torch(module, *, in_shape=None):
    """Convert a trained PyTorch ReLU generator, fully connected or convolutional.

    Parameters
    ----------
    module : torch.nn.Module
        An ``nn.Sequential`` (nested ones are flattened), or a module
        exposing exactly one ``nn.Sequential`` as a child, made of:
        ``Linear``, ``Conv2d``, ``ConvTranspose2d`` (groups 1, dilation 1, zero
        padding given as integers), eval-mode ``BatchNorm1d`` / ``BatchNorm2d``
        after a linear map (folded into it, per output channel for a
        convolution), ``ReLU`` between the linear maps, ``Flatten``
        (``start_dim=1``) / ``Unflatten`` (``dim=1``) and
        ``Upsample(mode="nearest")`` with integer factors, ``Identity``, and a
        final ``Tanh``, ``Sigmoid``, ``Identity`` (or none), ``LeakyReLU`` or
        :class:`PLU`.
    in_shape : tuple of int, default=None
        The per-sample input shape, needed when the network starts with a
        convolution, ``Flatten`` or ``Upsample`` (e.g. ``(C, H, W)``); a network
        starting with ``Linear`` or ``Unflatten`` knows it.

    Returns
    -------
    generator : ReLUGenerator
        One layer per ReLU (paper, eq. 3): the linear maps between two ReLUs
        (e.g. ``Upsample`` then ``Conv2d``, or ``Linear`` then ``Unflatten``)
        become one :class:`~skinvert.operators.Composite` layer. Weights in the
        module's float dtype (float32 or float64; half precision becomes
        float32). ``generator.forward(z)`` equals ``module(z).reshape(B, -1)``
        in eval mode up to rounding.

    Raises
    ------
    TypeError
        For an unsupported module (the message names its class and index),
        a layer after the output activation ("hidden activations must be
        ReLU"), or an input that is not a module.
    ValueError
        For a batch-norm in training mode (call ``module.eval()``), without
        running statistics, or not after a linear map; shapes that do not
        chain; a network starting with a convolution without ``in_shape``;
        a network ending with a ReLU.

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
    >>> dcgan = torch.nn.Sequential(
    ...     torch.nn.Linear(8, 16 * 7 * 7), torch.nn.BatchNorm1d(16 * 7 * 7), torch.nn.ReLU(),
    ...     torch.nn.Unflatten(1, (16, 7, 7)),
    ...     torch.nn.ConvTranspose2d(16, 8, 4, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
    ...     torch.nn.ConvTranspose2d(8, 1, 4, 2, 1), torch.nn.Tanh())
    >>> from_torch(dcgan.eval()).layer_sizes
    [8, 784, 1568, 784]
    """
    torch = _import_torch()
    nn = torch.nn

    seq = _find_sequential(module, torch)
    layers = _flatten(seq, torch)
    if not layers:
        raise ValueError("from_torch got an empty nn.Sequential.")
    build = Builder(torch, in_shape, _host)
    for name, layer in layers:
        where = _describe(name, layer)
        if isinstance(layer, nn.Identity):
            continue
        if build.state == "end" and not isinstance(layer, (nn.Flatten, nn.Unflatten)):
            build.after_end(where)
        if isinstance(layer, nn.Linear):
            build.linear(layer, where)
        elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            build.conv(layer, where, transposed=isinstance(layer, nn.ConvTranspose2d))
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            build.batchnorm(layer, where)
        elif isinstance(layer, nn.ReLU):
            build.relu(where)
        elif isinstance(layer, nn.Flatten):
            build.flatten(layer, where)
        elif isinstance(layer, nn.Unflatten):
            build.unflatten(layer, where)
        elif isinstance(layer, nn.Upsample):
            build.upsample(layer, where)
        elif isinstance(layer, (nn.Tanh, nn.Sigmoid, nn.LeakyReLU)) or _is_plu(layer):
            build.output_activation(_activation_of(layer, nn), where)
        else:
            raise TypeError(
                f"from_torch does not support {where} ({layer!r}); supported: Linear, Conv2d, "
                "ConvTranspose2d, BatchNorm1d/2d (eval mode, after a linear map), ReLU, "
                "Flatten, Unflatten, Upsample (nearest), Identity and a final Tanh, Sigmoid, "
                "LeakyReLU or PLU."
            )
    return ReLUGenerator.from_layers(build.finish(torch), output_activation=build.activation)


def _activation_of(layer, nn):
    if isinstance(layer, nn.Tanh):
        return "tanh"
    if isinstance(layer, nn.Sigmoid):
        return "sigmoid"
    if isinstance(layer, nn.LeakyReLU):
        return ("leaky_relu", {"slope": float(layer.negative_slope)})
    return ("plu", {"slope": float(layer.alpha), "c": float(layer.c)})
