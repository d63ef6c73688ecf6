"""Invertibility analysis: when can a ReLU generator be inverted, and how well?

The theory of Aberdam, Simon & Elad (2020), sections 3-4 and appendices A-C:

* :func:`mutual_coherence` (eq. 2), :func:`mutual_coherence_sub` (``mu_s``,
  Definition 3), :func:`spark`, :func:`sub_spark` (Definition 1) and
  :func:`sub_rank` (Definition 2). The last four are combinatorial: they are
  exact when an exhaustive search fits their budget and otherwise return
  proved bounds, in a :class:`BoundedValue` whose ``kind`` is one of
  ``"exact"``, ``"lower_bound"``, ``"upper_bound"``, ``"estimate"``.
* :func:`invertibility_report` and :func:`invertibility_report_from_supports`:
  per sample and layer, the conditions of Theorem 1, Corollary 1 and
  Theorem 2 (met / violated / unknown), the latent error bound of eq. 7 and
  Theorem 3's Oracle error interval, as an :class:`InvertibilityReport`.

Everything here runs on the host in float64 NumPy; inputs from other array
namespaces are converted.
"""

from ._coherence import mutual_coherence, mutual_coherence_sub, welch_bound
from ._conditions import MET, UNKNOWN, VIOLATED
from ._report import invertibility_report, invertibility_report_from_supports
from ._report_class import InvertibilityReport
from ._results import KINDS, BoundedValue
from ._spark import spark, sub_rank, sub_spark

__all__ = [
    "BoundedValue",
    "InvertibilityReport",
    "KINDS",
    "MET",
    "UNKNOWN",
    "VIOLATED",
    "invertibility_report",
    "invertibility_report_from_supports",
    "mutual_coherence",
    "mutual_coherence_sub",
    "spark",
    "sub_rank",
    "sub_spark",
    "welch_bound",
]
