"""Golden outputs: every inverter's transform on fixed seeds, as recorded by
tests/data/make_golden.py before the architecture refactor (1e-10 relative).

Re-recorded since, with the reason: ``tanh/noise/lp`` and ``fmnist/noise/lp``
(2026-12-03), when noisy rows started taking the polish from the linearized
network (``skinvert/algorithms/_polish_start.py``): 6 and 3 of 12 rows moved
by up to 1.4e-3 of their scale to codes whose loss is 0.9993-1.0002x the
recorded one, at 1.01x and 0.84x the recorded codes' distance to the
Oracle's. Again (2026-12-03, fifteenth session), when the estimator's noisy
polish started from its fitted linear decoder: 6 and 3 rows moved by up to
8.9e-3 of their scale, loss 0.99998-1.0054x and 0.99984-1.00066x the
recorded one. Row 0 of ``tanh/noise/lp`` stopped in a neighbouring support
region whose loss is 0.54 % higher (within the noise bound): its error grew
from 0.031 to 0.045 (the Oracle's 0.026), the case's RMS error from 1.025x
to 1.080x the Oracle's; on 512 signals of that net (two draws) the RMS
error is 1.020-1.021x against 1.019-1.024x from the linearized start."""

import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "data"))

from make_golden import PATH, cases, run_case  # noqa: E402

GOLDEN = np.load(PATH, allow_pickle=False)
CASES = {name: (make, X, kwargs) for name, make, X, kwargs in cases()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_output(name):
    make, X, kwargs = CASES[name]
    # The recorded input is the one inverted: regenerating it goes through a
    # matrix product whose last bits depend on the BLAS kernels of the CPU
    # (a measured case's ``G(z) @ A.T`` differed by 4e-15 on another machine).
    X_ref = GOLDEN[name + "/X"]
    np.testing.assert_allclose(X, X_ref, rtol=1e-12, atol=1e-14)
    Z = run_case(make, X_ref, kwargs)
    ref = GOLDEN[name + "/Z"]
    assert Z.dtype == np.float64 and Z.shape == ref.shape
    scale = np.max(np.abs(ref), axis=1, keepdims=True)
    # Noisy signals through the pursuits: a row stops where the refresh's
    # Levenberg-Marquardt rounds stop, not at a fixed point (row 1 of
    # tanh/noise/lp is 7.9e-5 from the optimum on its own supports), and such
    # truncated iterations carry the BLAS kernels' rounding differences
    # further: 4.9e-10 of the scale on an AMD EPYC (OpenBLAS 0.3.31) against
    # the recording, while every converged row agrees to 7e-11. There the
    # codes must also fit their signals as well as the recorded ones (row 1:
    # 8.9e-12 lower loss on that machine).
    truncated = "/noise/" in name and not name.endswith("/oracle")
    rtol = 1e-8 if truncated else 1e-10
    bound = np.broadcast_to(rtol * scale + 1e-300, ref.shape)
    np.testing.assert_array_less(np.abs(Z - ref), bound)
    if truncated:
        G = make().fit(X_ref).generator_
        loss = np.sum((G.forward(Z) - X_ref) ** 2, axis=1)
        loss_ref = np.sum((G.forward(ref) - X_ref) ** 2, axis=1)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-10)
