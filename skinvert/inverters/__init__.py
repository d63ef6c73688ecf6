"""scikit-learn estimators that invert a generator: signals X -> latent codes Z."""

from ._base import BaseInverter
from ._gradient_descent import GradientDescentInverter
from ._oracle import OracleInverter

__all__ = ["BaseInverter", "GradientDescentInverter", "OracleInverter"]
