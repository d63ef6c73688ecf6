"""Random generators of the paper's section 6.1 (iid Gaussian weights)."""

import numbers

import numpy as np
from sklearn.utils import check_random_state

from .generator import ReLUGenerator

__all__ = ["make_random_generator"]


def make_random_generator(layer_sizes, *, output_activation="tanh", random_state=None):
    """A generator with iid Gaussian weights, as in the paper's section 6.1.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_0, n_1, ..., n_L, n]``: the latent size, the hidden sizes and the
        signal size (at least two entries).
    output_activation : str, default="tanh"
        The output activation phi; see :class:`ReLUGenerator`.
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
