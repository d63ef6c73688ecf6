"""Constants of the paper's theorems, shared by the algorithms and the analysis."""

import math

__all__ = ["BP_CONSTANT"]

#: ``3 + sqrt(1.5)``: the constant of Lemma 2 (Tropp, 2006) in the error
#: bound ``epsilon_i`` of Layered Basis-Pursuit (Algorithm 2, Theorem 2,
#: eqs. 7 and 29-31).
BP_CONSTANT = 3.0 + math.sqrt(1.5)
