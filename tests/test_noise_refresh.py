"""The support refresh of a smooth phi: short rounds, then Algorithm 1 to
convergence on the moved rows (``finish_refresh``), and the convergence flags
it reports (issues 15 and 19)."""

import numpy as np
import pytest

from skinvert import ReLUGenerator, make_random_generator
from skinvert._array_api import get_namespace
from skinvert.activations import get_activation
from skinvert.algorithms._batch import Batch, PursuitResult
from skinvert.algorithms._refine import Refinement, debias, finish_refresh, refresh
from skinvert.algorithms.oracle import oracle_end_to_end


def _saturating_batch(dtype, n=24, sigma=1e-2):
    G0 = make_random_generator([4, 24, 60], random_state=0)
    W, b = list(G0.weights), list(G0.biases)
    G = ReLUGenerator(W[:-1] + [4 * W[-1]], b[:-1] + [4 * b[-1]], output_activation="tanh")
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((n, 4))
    Y = (G.forward(Z) + sigma * rng.standard_normal((n, 60))).astype(dtype)
    xp, _ = get_namespace(Y)
    weights = [np.asarray(w, dtype=dtype) for w in G.weights]
    biases = [np.asarray(v, dtype=dtype) for v in G.biases]
    batch = Batch(Y, np.ones_like(Y), weights, biases, G.activation, xp)
    # A start off the true region: the true code perturbed, on its own supports.
    Z0 = (Z + 0.3 * rng.standard_normal(Z.shape)).astype(dtype)
    return batch, Z0, xp


def _forward_masks(Z, batch):
    masks, x = [], Z
    for W, b in zip(batch.weights[:-1], batch.biases[:-1], strict=True):
        u = x @ W.T + b
        masks.append((u > 0).astype(Z.dtype))
        x = np.maximum(u, 0)
    return masks


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_short_rounds_end_at_a_converged_fixed_point(dtype):
    """After short refresh rounds and finish_refresh, a moved row is
    Algorithm 1's converged estimate on its own supports: another run from
    it lowers the loss by rounding only, and the dtype is kept."""
    batch, Z0, xp = _saturating_batch(dtype)
    res = PursuitResult()
    res.z = Z0
    res.supports = [m > 0 for m in _forward_masks(Z0, batch)]
    debias(res, batch, gamma=0.0, max_iter=30)
    refresh(res, batch, gamma=0.0, max_iter=10, debias_max_iter=1)  # 1 LM step per round
    moved = np.asarray(res.n_refresh) > 0
    assert moved.any()
    finish_refresh(res, batch, gamma=0.0, max_iter=30)
    assert res.z.dtype == dtype
    Z, sub = res.z[moved], batch.take(np.flatnonzero(moved))
    again, _, _ = oracle_end_to_end(
        sub.Y, sub.obs, batch.weights, batch.biases, batch.activation,
        _forward_masks(Z, batch), xp, max_iter=30, z0=Z,
    )  # fmt: skip
    before, after = sub.loss(Z), sub.loss(again)
    tol = 1e-6 if dtype == np.float64 else 1e-2
    assert np.all(after >= before * (1 - tol))


def test_refresh_rounds_are_short_for_a_smooth_phi_or_through_a_measurement():
    ref = Refinement(debias_max_iter=30)
    assert ref.refresh_round_iter(get_activation("tanh")) == 6
    assert ref.refresh_round_iter(get_activation("plu")) == 30
    # Through a measurement Algorithm 1 iterates for a piecewise-linear phi too.
    assert ref.refresh_round_iter(get_activation("plu"), measured=True) == 6
    assert Refinement(refresh_step_iter=None).refresh_round_iter(get_activation("tanh")) == 30
    none = Refinement(refresh_step_iter=None)
    assert none.refresh_round_iter(get_activation("plu"), measured=True) == 30


def test_unflag_clears_rows_and_recounts():
    res = PursuitResult()
    res.flag("debiasing", np.array([True, True, False, True]), np)
    res.unflag("debiasing", np.array([False, True, True, False]), np)
    np.testing.assert_array_equal(res.rows["debiasing"], [True, False, False, True])
    assert res.not_converged["debiasing"] == 2
    res.unflag("refresh", np.array([True, True, True, True]), np)  # never flagged: no-op
    assert "refresh" not in res.not_converged
