"""Linear operators: the layers of a generator and the measurement.

Every operator follows one contract (:class:`Layer`): per-sample
``in_shape`` / ``out_shape``, ``shape == (n_out, n_in)``, host parameters as
read-only NumPy arrays, ``to_namespace(xp, dtype=..., device=...)`` for a
bound copy whose batched ``matmat`` (``X A^T``), ``rmatmat`` (``R A``) and
``forward`` (``X A^T + b``) work in the data's namespace, and ``to_dense()``.
:func:`dottest` checks an operator's adjoint.
"""

from ._base import Layer
from ._conv import Conv2d, ConvTranspose2d
from ._dense import Dense
from ._dottest import dottest
from ._measurement import Measurement, check_measurement, measurement_shape
from ._reshape import Composite, Reshape, Upsample

__all__ = [
    "Composite",
    "Conv2d",
    "ConvTranspose2d",
    "Dense",
    "Layer",
    "Measurement",
    "Reshape",
    "Upsample",
    "check_measurement",
    "dottest",
    "measurement_shape",
]
