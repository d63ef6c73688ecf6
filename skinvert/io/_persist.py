"""Saving fitted estimators: the types ``skops.io.load`` must trust.

A fitted skinvert estimator holds, besides scikit-learn's own attributes,
plain Python values, NumPy arrays and these classes: the estimators
themselves, :class:`~skinvert.ReLUGenerator` (``generator_``) and its
:class:`~skinvert.activations.Activation`. ``skops.io`` refuses to build any
type it is not told to trust; pass :data:`SKOPS_TRUSTED_TYPES` (after
checking it with ``skops.io.get_untrusted_types(file=...)`` against a file
you did not write yourself)::

    import skops.io as sio
    from skinvert.io import SKOPS_TRUSTED_TYPES
    sio.dump(estimator, "inverter.skops")
    estimator = sio.load("inverter.skops", trusted=SKOPS_TRUSTED_TYPES)

A ReLUGenerator or Activation restored by skops or by pickle / joblib is
validated as a new one is (shapes chain, finite values, read-only arrays).
"""

from ..activations import Activation
from ..generator import ReLUGenerator
from ..inverters import (
    GeneratorImputer,
    GradientDescentInverter,
    LatentPursuitInverter,
    LayeredBPInverter,
    OracleInverter,
)


def _type_name(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


#: Fully qualified names of the skinvert types a fitted estimator holds: the
#: ``trusted`` argument of ``skops.io.load`` for skinvert estimators (add the
#: types of anything else you put around them, e.g. a Pipeline's steps).
SKOPS_TRUSTED_TYPES = tuple(
    _type_name(cls)
    for cls in (
        Activation,
        ReLUGenerator,
        GeneratorImputer,
        GradientDescentInverter,
        LatentPursuitInverter,
        LayeredBPInverter,
        OracleInverter,
    )
)
