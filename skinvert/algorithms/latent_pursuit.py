"""Latent-Pursuit (Algorithm 5): the layer-wise driver every solver runs under.

Beside the paper's pseudo-code (Algorithm 5; Algorithm 2 is the same loop
with signed lassos, no constraints and its own lambda rule)::

    (polish from the linearized network)      -> _polish_start (LP only:
                                                 rows it fits skip the rest)
    x_L = argmin eq. 8 (image layer)          -> _image_layer, plan.image
    S_L = supp(x_L)                           -> rule.support
    for i = L-1, ..., 1:
        x_i = argmin eq. 9 on the rows S_{i+1} -> plan.hidden
        S_i = supp(x_i)
    z = argmin eq. 16 on the rows S_1         -> plan.latent
    z = Algorithm 1 on S_1..S_L (debiasing)   -> _refine.refine

Each ``argmin`` is a :class:`~skinvert.solvers.LayerProblem` handed to a
per-layer solver (:mod:`skinvert.solvers`): exact active set / Lawson-Hanson
by default, or the paper's FISTA (Algorithm 3) and linearized ADMM
(Algorithm 4, eq. 18). The rule (:mod:`skinvert.algorithms.noise`) gives
each ``lambda_i`` and decides each support.
"""

from .._linalg import compress_rows
from ..solvers import LayerProblem
from ._batch import PursuitResult
from ._measured import fold_measurement, measured_image_layer
from ._polish_start import merge_rest, polish_start, polish_start_rows
from ._refine import refine
from .noise import SupportRule, settle_noisy_rows

__all__ = ["check_pursuit", "pursuit"]


def check_pursuit(batch, plan, *, nonneg, rule):
    """Raise where the pursuit cannot treat this batch (a measurement with a
    non-identity phi needs an exact solver, Latent-Pursuit's problems and
    no noise-derived thresholds)."""
    meas, act = batch.measurement, batch.activation
    if meas is None or act.name == "identity":
        return
    if not act.piecewise_linear:
        raise ValueError(
            f"A measurement with a {act.name} output is not supported by the pursuits (phi "
            "is not piecewise linear); use GradientDescentInverter."
        )
    if not (plan.image.exact and nonneg):
        raise ValueError(
            "Only Latent-Pursuit with an exact image-layer solver ('active_set') sees "
            f"through a measurement with a {act.name} output; use solver='active_set' or "
            "GradientDescentInverter."
        )
    if type(rule) is not SupportRule:
        raise ValueError(
            "noise_std and epsilon are not supported with a measurement and a non-identity "
            "output; set lam instead."
        )


def pursuit(batch, plan, rule, *, nonneg, constraints, gamma=0.0, refinement, noise=None,
            start=None):
    """Run Latent-Pursuit (Algorithm 5) or Layered BP (Algorithm 2) on a batch.

    Parameters
    ----------
    batch : Batch
    plan : SolverPlan
        The solver of the image layer, the middle layers and z.
    rule : SupportRule
        ``lambda_i`` and the supports (:class:`~.noise.NoiseRule` with noise,
        :class:`~.layered_bp.EpsilonRule` for Algorithm 2's schedule).
    nonneg, constraints : bool
        Latent-Pursuit (True, True: eqs. 8, 9, 16) or Layered BP (False, False).
    gamma : float
        Ridge on z (eq. 16).
    refinement : Refinement
        Debiasing (Algorithm 1 on the supports), refresh and fallback.
    noise : NoiseModel or None
        With ``rule`` a NoiseRule: the rows inconsistent with the noise level
        are retried, polished (``refinement.polish``) and reported
        (:func:`~.noise.settle_noisy_rows`).
    start : callable or None
        ``start(Y, obs) -> Z0``: the start of the polish before the pass
        (``refinement.polish_start``) in place of the linearized network's
        least squares, e.g. a fitted linear decoder (see
        :func:`~._polish_start.polish_start`).

    Returns
    -------
    PursuitResult
    """
    if batch.measurement is not None and batch.activation.name == "identity":
        batch = fold_measurement(batch)
    check_pursuit(batch, plan, nonneg=nonneg, rule=rule)

    def run(b, rule_):
        res = _one_pass(b, plan, rule_, nonneg=nonneg, constraints=constraints, gamma=gamma)
        return refine(res, b, gamma=gamma, refinement=refinement)

    def solve(b):
        res = run(b, rule)
        if noise is not None and refinement.debias:

            def again(b_, model):
                return run(b_, rule.with_model(model))

            settle_noisy_rows(res, b, again, noise, gamma, polish=refinement.polish_stage())
        return res

    if refinement.polish_start and nonneg and plan.image.exact:
        # The polish from the linearized network first (clean signals: on a
        # wide image layer; with a noise level: every fully observed row);
        # the pass for the rows it does not fit (exactly, or within the noise).
        xp = batch.xp
        rows = polish_start_rows(batch, noisy=noise is not None)
        if bool(xp.any(rows)):
            first, fitted = polish_start(
                batch, rows, max_iter=refinement.polish_start_max_iter, noise=noise, start=start
            )
            if bool(xp.all(fitted)):
                return first
            rest = ~fitted
            return merge_rest(first, solve(batch.take(compress_rows(rest, xp))), rest, xp)
    return solve(batch)


def _one_pass(batch, plan, rule, *, nonneg, constraints, gamma):
    """One layer-wise pass of Algorithm 5 (or 2), before the refinement stages."""
    xp, L, dt = batch.xp, batch.n_layers, batch.dtype
    W, b, lips = batch.weights, batch.biases, batch.lipschitz
    res = PursuitResult()

    def solve(solver, problem):
        x, n_bad = solver.solve(problem)
        res.count(solver.label(problem), n_bad)
        return x

    # Image layer x_L: eq. 8 (Algorithm 2: its first lasso).
    if batch.measurement is not None:
        # Eq. 8 seen through A: an active set on phi's linear pieces.
        rule = rule.start(batch, None, None)
        x = measured_image_layer(
            batch,
            plan.image,
            rule.lam(L) if L else 0.0,
            nonneg and L > 0,
            res,
            f"layer {L}" if L else "z",
        )
        img_rows = None
        if L == 0:
            res.z = x
            return res
        gram = None
    else:
        U, w = batch.inverse_target()
        if L == 0:  # no hidden layer: z from the image layer itself (eq. 16)
            res.z = solve(
                plan.latent,
                LayerProblem(
                    "latent", 0, W[0], b[0], U, w, 0.0, False, False, lips[0], xp, ridge=gamma
                ),
            )
            return res
        rule = rule.start(batch, U, w)
        # Usable entries, weighted by the rule's noise model (NoiseRule).
        img_rows = rule.image_rows(U, w, batch.activation, xp)
        img_rows = None if bool(xp.all(img_rows == 1)) else img_rows
        image = LayerProblem(
            "image",
            L,
            W[L],
            b[L],
            U,
            img_rows,
            rule.lam(L),
            nonneg,
            False,
            lips[L],
            xp,
            Y=batch.Y,
            obs=batch.obs,
            activation=batch.activation,
            keep_gram=rule.uses_image_gram(),
        )
        x = solve(plan.image, image)
        gram = image.gram
    hidden, supports = [x], [rule.support(x, L, W[L], img_rows, xp, gram=gram)]
    # Middle layers x_i, i = L-1..1: eq. 9 on the rows S_{i+1} (Algorithm 2: a lasso).
    for i in range(L - 1, 0, -1):
        rows = xp.astype(supports[0], dt)
        x = solve(
            plan.hidden,
            LayerProblem(
                "hidden",
                i,
                W[i],
                b[i],
                hidden[0] * rows,
                rows,
                rule.lam(i),
                nonneg,
                constraints,
                lips[i],
                xp,
            ),
        )
        hidden.insert(0, x)
        supports.insert(0, rule.support(x, i, W[i], rows, xp))
    # Latent z: eq. 16 on the rows S_1 (Algorithm 2: least squares).
    rows = xp.astype(supports[0], dt)
    res.z = solve(
        plan.latent,
        LayerProblem(
            "latent",
            0,
            W[0],
            b[0],
            hidden[0] * rows,
            rows,
            0.0,
            False,
            constraints,
            lips[0],
            xp,
            ridge=gamma,
        ),
    )
    res.hidden, res.supports = hidden, supports
    return res
