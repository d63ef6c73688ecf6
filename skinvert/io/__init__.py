"""Reading and writing generators: npz / safetensors files (never pickles), PyTorch import.

The skops trusted-types list moved to :data:`skinvert.inverters.SKOPS_TRUSTED_TYPES`
(it names the estimators, and this package imports none).
"""

from ._files import load_generator, save_generator
from ._torch import from_torch


def __getattr__(name):
    if name == "SKOPS_TRUSTED_TYPES":
        raise AttributeError(
            "skinvert.io.SKOPS_TRUSTED_TYPES moved: use skinvert.inverters.SKOPS_TRUSTED_TYPES "
            "(or skinvert.SKOPS_TRUSTED_TYPES); skinvert.io imports no estimator."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["from_torch", "load_generator", "save_generator"]
