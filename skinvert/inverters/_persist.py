"""Saving fitted estimators: the types ``skops.io.load`` must trust.

A fitted skinvert estimator holds, besides scikit-learn's own attributes,
plain Python values, NumPy arrays and these classes: the estimators
themselves, :class:`~skinvert.ReLUGenerator` (``generator_``), its layers
(:class:`~skinvert.operators.Layer` subclasses, e.g.
:class:`~skinvert.operators.Dense`) and its
:class:`~skinvert.activations.Activation`. ``skops.io`` refuses to build any
type it is not told to trust; pass :data:`SKOPS_TRUSTED_TYPES` (after
checking it with ``skops.io.get_untrusted_types(file=...)`` against a file
you did not write yourself)::

    import skops.io as sio
    from skinvert.inverters import SKOPS_TRUSTED_TYPES
    sio.dump(estimator, "inverter.skops")
    estimator = sio.load("inverter.skops", trusted=SKOPS_TRUSTED_TYPES)

A ReLUGenerator, layer or Activation restored by skops or by pickle / joblib
is validated as a new one is (shapes chain, finite values, read-only arrays).
See docs/security.md.
"""

from ..activations import Activation
from ..generator import ReLUGenerator
from ..operators import Layer, Measurement
from ..solvers import FISTA, ActiveSet, LinearizedADMM
from ._gradient_descent import GradientDescentInverter
from ._hybrid import HybridInverter
from ._imputer import GeneratorImputer
from ._layered_bp import LayeredBPInverter
from ._oracle import OracleInverter
from ._pursuit import LatentPursuitInverter

__all__ = ["SKOPS_TRUSTED_TYPES"]


def _type_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _layer_classes(cls=Layer):
    """Every generator layer class (a fitted estimator holds no Measurement)."""
    for sub in cls.__subclasses__():
        if sub is not Measurement:
            yield sub
        yield from _layer_classes(sub)


#: Fully qualified names of the skinvert types a fitted estimator holds: the
#: ``trusted`` argument of ``skops.io.load`` for skinvert estimators (add the
#: types of anything else you put around them, e.g. a Pipeline's steps).
SKOPS_TRUSTED_TYPES = tuple(
    _type_name(cls)
    for cls in (
        Activation,
        ReLUGenerator,
        *sorted(set(_layer_classes()), key=_type_name),
        ActiveSet,
        FISTA,
        LinearizedADMM,
        GeneratorImputer,
        GradientDescentInverter,
        HybridInverter,
        LatentPursuitInverter,
        LayeredBPInverter,
        OracleInverter,
    )
)
