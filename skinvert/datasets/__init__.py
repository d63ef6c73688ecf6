"""Pretrained generators shipped with skinvert, and the tools that made them.

>>> from skinvert.datasets import list_pretrained_generators, load_pretrained_generator
>>> list_pretrained_generators()
['digits-fc', 'fashion-mnist-dcgan', 'fashion-mnist-fc']
>>> load_pretrained_generator("digits-fc").layer_sizes
[8, 32, 64, 64]
>>> load_pretrained_generator("fashion-mnist-dcgan").layer_sizes
[32, 3136, 6272, 784]

The weights are plain float32 arrays (no pickles): ``.npz`` generator files
loaded with :func:`skinvert.load_generator` for the fully connected ones, and
a ``.safetensors`` file in torch layouts (kernels, per-channel biases, its
architecture in the metadata) for the convolutional ``fashion-mnist-dcgan``,
read with the same checks. Batch-norm is already folded into the weights and
biases. How each file was trained (command, seed, epochs, torch version, data,
support statistics) is in ``data/PROVENANCE.md`` and in the JSON file next to
each weights file; :func:`pretrained_provenance` returns the latter, and
:func:`support_statistics` measures them per layer on any generator (fully
connected or convolutional). The
training scripts are ``python -m tools.train_fc_gan`` and
``python tools/train_dcgan.py`` (in the source checkout, not installed).
Importing this package never imports torch.
"""

import json
from importlib import resources

from ..io import load_generator
from ..io._files import read_layer_records
from ._idx import load_idx, load_idx_images
from ._stats import support_statistics

__all__ = [
    "list_pretrained_generators",
    "load_idx",
    "load_idx_images",
    "load_pretrained_generator",
    "pretrained_provenance",
    "support_statistics",
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
    "fashion-mnist-dcgan": (
        "fashion_mnist_dcgan.safetensors",
        "fashion_mnist_dcgan.json",
        "32 -> 64x7x7 -> 32x14x14 -> 1x28x28: Linear-BN-ReLU-Unflatten, "
        "ConvTranspose2d(4, 2, 1)-BN-ReLU, ConvTranspose2d(4, 2, 1)-Tanh; GAN on Fashion-MNIST",
    ),
}

_ALIASES = {
    "fashion_mnist_fc": "fashion-mnist-fc",
    "fashion-mnist": "fashion-mnist-fc",
    "fashion_mnist": "fashion-mnist-fc",
    "digits_fc": "digits-fc",
    "digits": "digits-fc",
    "fashion_mnist_dcgan": "fashion-mnist-dcgan",
    "dcgan": "fashion-mnist-dcgan",
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
        ``"digits-fc"``, ``"fashion-mnist-dcgan"``) or an alias.

    Returns
    -------
    generator : ReLUGenerator
        The generator: float32 weights, batch-norm folded into the biases. The fully connected
        ones have a PLU output (``slope=0.1, c=1``); ``fashion-mnist-dcgan`` has
        a tanh output and convolutional layers (``generator.layers``: a
        ``Composite`` of ``Dense`` and ``Reshape`` to 64 x 7 x 7, then two
        ``ConvTranspose2d``). Outputs are images scaled to [-1, 1], rows of
        ``n_output`` pixels (reshape to 28 x 28 or 8 x 8).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the available ones).
    """
    key = _resolve(name)
    fname = _REGISTRY[key][0]
    ref = resources.files(__name__).joinpath("data", fname)
    with resources.as_file(ref) as path:
        if fname.endswith(".safetensors"):
            return _load_torch_layout(path, pretrained_provenance(key)["architecture"])
        return load_generator(path)


def _load_torch_layout(path, arch):
    """A generator from a ``.safetensors`` file in torch layouts (``tools/train_dcgan.py``).

    ``arch["layers"]`` lists ``{"name", "type", "in_shape", "out_shape", ...}``;
    tensors ``{name}.weight`` and ``{name}.bias``. A ``Linear`` with
    ``then_reshape`` becomes a ``Composite`` of ``Dense`` and ``Reshape``.
    The file's ``reference.*`` tensors (codes and outputs of the torch
    module) are not read.
    """
    records, rename = [], {}
    for i, spec in enumerate(arch["layers"]):
        name = spec["name"]
        if spec["type"] == "Linear":
            (n_in,), (n_out,) = spec["in_shape"], spec["out_shape"]
            dense = {"type": "Dense", "config": {"n_in": n_in, "n_out": n_out}}
            if "then_reshape" in spec:
                reshape = {"type": "Reshape", "config": {
                    "in_shape": [n_out], "out_shape": list(spec["then_reshape"])}}
                records.append({"type": "Composite", "config": {}, "layers": [dense, reshape]})
                prefix = f"layer_{i}.0"
            else:
                records.append(dense)
                prefix = f"layer_{i}"
        elif spec["type"] == "ConvTranspose2d":
            (c_in, H, W), (c_out, Ho, Wo) = spec["in_shape"], spec["out_shape"]
            (sh, sw), (ph, pw) = spec["stride"], spec["padding"]
            oph, opw = spec["output_padding"]
            # H_out = (H - 1) s - 2 p + k + output_padding, solved for k
            kernel = [Ho - (H - 1) * sh + 2 * ph - oph, Wo - (W - 1) * sw + 2 * pw - opw]
            records.append({"type": "ConvTranspose2d", "config": {
                "in_shape": [c_in, H, W], "out_channels": c_out, "kernel_size": kernel,
                "stride": [sh, sw], "padding": [ph, pw], "output_padding": [oph, opw]}})
            prefix = f"layer_{i}"
        else:  # pragma: no cover - the shipped files hold only these two
            raise ValueError(f"Unknown layer type {spec['type']!r} in {path!r}.")
        rename[prefix + ".weight"], rename[prefix + ".bias"] = name + ".weight", name + ".bias"
    return read_layer_records(
        path, metadata_key="architecture", records=records, rename=rename,
        activation=arch["output_activation"], ignore=("reference.",))


def pretrained_provenance(name):
    """How a shipped generator was trained (the JSON written by the training script).

    Parameters
    ----------
    name : str
        A name from :func:`list_pretrained_generators`.

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
