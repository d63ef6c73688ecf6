"""Reading and writing generators: npz / safetensors files (never pickles), PyTorch import.

``SKOPS_TRUSTED_TYPES``: the types to trust when loading a fitted skinvert
estimator with ``skops.io.load`` (see docs/scaling.md).
"""

from ._files import load_generator, save_generator
from ._torch import from_torch


def __getattr__(name):
    # Lazy: the estimators import skinvert.generator, which imports this package.
    if name == "SKOPS_TRUSTED_TYPES":
        from ._persist import SKOPS_TRUSTED_TYPES

        return SKOPS_TRUSTED_TYPES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SKOPS_TRUSTED_TYPES", "from_torch", "load_generator", "save_generator"]
