"""Per-layer solvers of the pursuits: one contract, each owning its knobs.

- :class:`ActiveSet` -- exact: least squares, primal-dual active set and
  Lawson-Hanson (the default, ``solver="active_set"``);
- :class:`FISTA` -- the paper's Algorithm 3 (eq. 8), and FISTA on the
  lassos of Algorithm 2;
- :class:`LinearizedADMM` -- the paper's Algorithm 4 (eqs. 9-15) and its
  z-step eq. 18.

``solver="paper"`` is FISTA on the image layer and linearized ADMM below it
(Latent-Pursuit), or FISTA on every lasso (Layered BP). The drivers of
Algorithms 2 and 5 (:mod:`skinvert.algorithms`) pose one
:class:`LayerProblem` per layer and call ``solver.solve(problem)``.
"""

from ._active_set import ActiveSet
from ._base import BaseLayerSolver, LayerProblem
from ._first_order import FISTA, LinearizedADMM

__all__ = [
    "FISTA",
    "ActiveSet",
    "BaseLayerSolver",
    "LayerProblem",
    "LinearizedADMM",
    "SolverPlan",
    "resolve_solver",
]

_ROLES = ("image", "hidden", "latent")


class SolverPlan:
    """The solver of each role: the image layer, the middle layers and ``z``."""

    def __init__(self, image, hidden, latent):
        self.image = image
        self.hidden = hidden
        self.latent = latent

    @property
    def exact(self):
        return all(s.exact for s in (self.image, self.hidden, self.latent))

    def __repr__(self):
        return f"SolverPlan(image={self.image!r}, hidden={self.hidden!r}, latent={self.latent!r})"


def resolve_solver(solver, *, nonneg, max_iter=1000, tol=1e-10, refine_max_iter=30, rho=1e-2):
    """Map ``solver`` to a :class:`SolverPlan`.

    Parameters
    ----------
    solver : {"active_set", "paper"}, BaseLayerSolver, dict or SolverPlan
        A string alias (built from the knobs below), one solver object for
        every layer, or a dict ``{"image": ..., "hidden": ..., "latent": ...}``
        (missing roles: ``ActiveSet()``).
    nonneg : bool
        Latent-Pursuit (True: "paper" is FISTA + linearized ADMM) or Layered
        BP (False: "paper" is FISTA on every lasso).
    max_iter, tol : int, float
        First-order iterations and stopping tolerance (the aliases only).
    refine_max_iter : int
        Active-set refinement steps of ``"active_set"``.
    rho : float or tuple
        ``rho`` of the linearized ADMM of ``"paper"``.

    Returns
    -------
    SolverPlan
    """
    if isinstance(solver, SolverPlan):
        return solver
    if isinstance(solver, BaseLayerSolver):
        return SolverPlan(solver, solver, solver)
    if isinstance(solver, dict):
        unknown = set(solver) - set(_ROLES)
        if unknown:
            raise ValueError(f"solver dict keys must be among {_ROLES}, got {sorted(unknown)}.")
        for key, value in solver.items():
            if not isinstance(value, BaseLayerSolver):
                raise TypeError(f"solver[{key!r}] must be a BaseLayerSolver, got {value!r}.")
        return SolverPlan(*(solver.get(r, ActiveSet()) for r in _ROLES))
    if solver == "active_set":
        s = ActiveSet(refine_max_iter, fista_max_iter=max_iter, fista_tol=tol)
        return SolverPlan(s, s, s)
    if solver == "paper":
        fista = FISTA(max_iter, tol=tol)
        if not nonneg:
            return SolverPlan(fista, fista, fista)
        admm = LinearizedADMM(rho, max_iter=max_iter, tol=tol)
        return SolverPlan(fista, admm, admm)
    raise ValueError(
        "solver must be 'active_set', 'paper', a BaseLayerSolver (e.g. "
        f"skinvert.solvers.ActiveSet()) or a dict of them by role; got {solver!r}."
    )
