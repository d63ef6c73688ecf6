"""Pretrained generators shipped with skinvert, and the tools that made them.

>>> from skinvert.datasets import list_pretrained_generators, load_pretrained_generator
>>> list_pretrained_generators()
['digits-fc', 'fashion-mnist-fc']
>>> load_pretrained_generator("digits-fc").layer_sizes
[8, 32, 64, 64]

The weights are plain float32 arrays in ``.npz`` files (no pickles), loaded
with :func:`skinvert.load_generator`; batch-norm is already folded into the
weights and biases. How each file was trained (command, seed, epochs, torch
version, data, support statistics) is in ``data/PROVENANCE.md`` and in the
JSON file next to each weights file; :func:`pretrained_provenance` returns the
latter. The training script is ``python -m tools.train_fc_gan`` (in the source
checkout, not installed).
Importing this package never imports torch.
"""

import json
from importlib import resources

from ..io import load_generator
from ._idx import load_idx, load_idx_images

__all__ = [
    "list_pretrained_generators",
    "load_idx",
    "load_idx_images",
    "load_pretrained_generator",
    "pretrained_provenance",
]

#: name -> (weights file, provenance file, one-line description)
_REGISTRY = {
    "fashion-mnist-fc": (
        "fashion_mnist_fc.npz",
        "fashion_mnist_fc.json",
        "20-128-392-784, Linear-BN-ReLU x2, Linear-PLU; GAN on Fashion-MNIST "
        "(the paper's section 6.2 architecture)",
    ),
    "digits-fc": (
        "digits_fc.npz",
        "digits_fc.json",
        "8-32-64-64, Linear-BN-ReLU x2, Linear-PLU; GAN on sklearn's load_digits "
        "(8x8), tiny, for fast tests",
    ),
}

_ALIASES = {
    "fashion_mnist_fc": "fashion-mnist-fc",
    "fashion-mnist": "fashion-mnist-fc",
    "fashion_mnist": "fashion-mnist-fc",
    "digits_fc": "digits-fc",
    "digits": "digits-fc",
}


def list_pretrained_generators():
    """Names accepted by :func:`load_pretrained_generator`.

    Returns
    -------
    names : list of str
        The canonical names, sorted (aliases such as ``"fashion-mnist"`` are
        accepted too).
    """
    return sorted(_REGISTRY)


def _resolve(name):
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}.")
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in _REGISTRY:
        raise ValueError(
            f"Unknown pretrained generator {name!r}; available: "
            f"{', '.join(list_pretrained_generators())}."
        )
    return key


def load_pretrained_generator(name):
    """Load a shipped pretrained generator.

    Parameters
    ----------
    name : str
        One of :func:`list_pretrained_generators` (``"fashion-mnist-fc"``,
        ``"digits-fc"``) or an alias.

    Returns
    -------
    generator : ReLUGenerator
        float32 weights, batch-norm folded into the biases, PLU output
        (``slope=0.1, c=1``); outputs are images scaled to [-1, 1], rows of
        ``n_output`` pixels (reshape to 28 x 28 or 8 x 8).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the available ones).
    """
    fname = _REGISTRY[_resolve(name)][0]
    ref = resources.files(__name__).joinpath("data", fname)
    with resources.as_file(ref) as path:
        return load_generator(path)


def pretrained_provenance(name):
    """How a shipped generator was trained (the JSON written by the training script).

    Parameters
    ----------
    name : str

    Returns
    -------
    provenance : dict
        ``command``, ``seed``, ``epochs``, ``torch_version``, ``date``,
        ``data``, ``train_wall_s``, ``support_statistics``, the per-epoch
        ``log``, ...
    """
    fname = _REGISTRY[_resolve(name)][1]
    ref = resources.files(__name__).joinpath("data", fname)
    return json.loads(ref.read_text(encoding="utf-8"))
