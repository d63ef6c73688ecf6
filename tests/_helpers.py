"""Helpers shared by the test modules (fixtures live in conftest.py)."""

import numpy as np


def snr_db(ref, est):
    """Per-row SNR in dB of ``est`` against ``ref`` (inf for an exact row)."""
    ref = np.asarray(ref, dtype=np.float64)
    est = np.asarray(est, dtype=np.float64)
    num = np.sum(ref**2, axis=1)
    den = np.sum((ref - est) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(num / den)


def corollary1_met(generator, Z):
    """Per sample: the sparsity conditions of Corollary 1 (random weights)."""
    s = [S.sum(axis=1) for S in generator.supports(Z)]
    n, n0 = generator.n_output, generator.n_latent
    ok = s[-1] < (n + 1) / 2
    for i in range(len(s) - 1):
        ok &= s[i] < (s[i + 1] + 1) / 2
    return ok & (s[0] >= n0)


def record_rows(monkeypatch, owner, name, arg=0):
    """Wrap ``owner.name`` so that each call appends the row count of its
    positional argument ``arg``; returns the list (blocks of rows in tests)."""
    calls = []
    fn = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(len(args[arg]))
        return fn(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls



def record_oracle_runs(monkeypatch):
    """Record the ``max_iter`` of every Algorithm 1 run of the pursuits'
    refinement (``_refine.oracle_end_to_end``); returns the list."""
    from skinvert.algorithms import _refine

    calls = []
    real = _refine.oracle_end_to_end

    def spy(*args, **kwargs):
        calls.append(kwargs["max_iter"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_refine, "oracle_end_to_end", spy)
    return calls


def without_polish_start(monkeypatch):
    """Latent-Pursuit without the polish from the linearized network on wide
    image layers (:mod:`skinvert.algorithms._polish_start`): every row takes
    the layer-wise pass, as the paper's Algorithm 5 (tests of the pass and
    its refinement stages on wide layers)."""
    from skinvert.algorithms import latent_pursuit

    def none(batch, **kwargs):
        xp = batch.xp
        return xp.zeros((batch.Y.shape[0],), dtype=xp.bool)

    monkeypatch.setattr(latent_pursuit, "polish_start_rows", none)
