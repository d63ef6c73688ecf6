"""The contract every per-layer solver follows, and the layer problem it solves.

Every step of the layer-wise pursuits (Algorithms 2 and 5) poses, for a batch
of B samples (rows), one problem per sample of the form

    min_x  1/2 || sqrt(w) * (W x + b - t) ||^2 + lam pen(x) + ridge/2 ||x||^2
    s.t.   x >= 0                              (nonneg: eqs. 8-9)
           W_j x + b_j <= 0  where w_j = 0      (constraints: eq. 9, eq. 16)

with ``pen(x) = 1^T x`` when ``nonneg`` and ``||x||_1`` otherwise (Algorithm
2's lasso). The image layer of eq. 8 is posed on the signal itself,
``1/2 ||obs * (y - phi(W x + b))||^2``: a solver may solve it through phi
(Algorithm 3) or in the pre-activation domain ``t = phi^-1(y)``, which the
problem carries too. A solver object owns its knobs (iteration caps,
tolerances, step parameters) and states which problems it handles;
``solve`` = checks + ``_solve`` (in the spirit of skglm's solvers).
"""

from dataclasses import dataclass
from typing import Any

__all__ = ["BaseLayerSolver", "LayerProblem"]


@dataclass
class LayerProblem:
    """One layer problem of a batch (see the module notes for its form).

    Attributes
    ----------
    kind : {"image", "hidden", "latent"}
        The image layer ``x_L`` (eq. 8 / Algorithm 2's first lasso), a middle
        layer ``x_i`` (eq. 9 / Algorithm 2's lassos) or the latent ``z``
        (eq. 16 / Algorithm 2's least squares).
    layer : int
        Index ``i`` of the unknown ``x_i`` (0: ``z``).
    W, b : arrays of shape (m, k) and (m,)
    target : array of shape (B, m)
        ``t`` (for the image layer: ``phi^-1(y)``, zero where unusable).
    rows : array of shape (B, m) or None
        0/1 row weights ``w`` (None: every row, one Gram matrix for the batch).
    lam : float or array of shape (B,)
        Normalised by :func:`~skinvert.solvers._lam.as_lam`.
    nonneg, constraints : bool
    ridge : float
        ``gamma`` of eq. 16 (the z-step).
    lipschitz : float
        ``lambda_max(W^T W)`` (computed once per generator).
    Y, obs, activation : optional
        The signals, observed mask and phi (image layer only), for solvers
        that work through phi (Algorithm 3).
    keep_gram : bool
        Keep every row's ``W^T diag(rows) W`` in ``gram`` when a solver forms
        them (the noise rule's per-entry thresholds reuse them); otherwise
        they are freed block by block (a stack of ``B k^2`` entries: 630 MB
        for 512 rows of a 392-unit image layer).
    gram : array of shape (B, k, k) or None
        Set, with ``keep_gram``, by a solver that formed every row's Gram
        matrix.
    """

    kind: str
    layer: int
    W: Any
    b: Any
    target: Any
    rows: Any
    lam: Any
    nonneg: bool
    constraints: bool
    lipschitz: float
    xp: Any
    ridge: float = 0.0
    Y: Any = None
    obs: Any = None
    activation: Any = None
    keep_gram: bool = False
    gram: Any = None

    @property
    def name(self):
        return "z" if self.layer == 0 else f"layer {self.layer}"


class BaseLayerSolver:
    """Base class of the per-layer solvers.

    Subclasses set the class attributes below to state what they handle and
    implement ``_solve(problem) -> (x, n_not_converged)``.

    Attributes
    ----------
    handles_nonneg, handles_signed, handles_constraints : bool
        Whether the solver accepts problems with ``x >= 0``, signed problems
        (Algorithm 2's lasso, the z-step) and eq. 9's ReLU inequalities.
    kinds : tuple of str
        The problem kinds it accepts ("image", "hidden", "latent").
    exact : bool
        True when its solutions satisfy the KKT conditions exactly (supports
        then come from the solution itself); the measured image layer and the
        linear-pieces active set need an exact solver.
    """

    handles_nonneg = True
    handles_signed = True
    handles_constraints = True
    kinds = ("image", "hidden", "latent")
    exact = False

    def solve(self, problem):
        """Check that this solver handles ``problem``, then solve it.

        Returns
        -------
        x : array of shape (B, k)
        n_not_converged : int
            Rows that hit an iteration limit (reported in a ConvergenceWarning).
        """
        self._check(problem)
        return self._solve(problem)

    def _check(self, problem):
        name = type(self).__name__
        if problem.kind not in self.kinds:
            raise ValueError(
                f"{name} does not solve the {problem.kind} problem ({problem.name}); it "
                f"handles {', '.join(self.kinds)}. Pass solver='active_set' or a dict "
                "{'image': ..., 'hidden': ..., 'latent': ...} of solvers."
            )
        if problem.nonneg and not self.handles_nonneg:
            raise ValueError(f"{name} does not handle the non-negative problems of eqs. 8-9.")
        if not problem.nonneg and not self.handles_signed:
            raise ValueError(
                f"{name} does not handle signed problems (Algorithm 2's lasso, {problem.name})."
            )
        if problem.constraints and not self.handles_constraints:
            raise ValueError(
                f"{name} does not handle eq. 9's ReLU inequality constraints ({problem.name})."
            )

    def _solve(self, problem):  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self, problem):
        """The stage name used in ConvergenceWarning messages."""
        return problem.name

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(vars(self)))))


def n_false(mask, xp):
    """Number of False entries of a boolean (B,) array, as an int."""
    return int(xp.sum(xp.astype(~mask, xp.int32)))
