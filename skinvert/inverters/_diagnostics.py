"""What a transform tells its caller: per-row diagnostics, warnings, progress.

- :class:`BatchRecord` -- what one batch reports (host arrays, picklable for
  joblib workers): per-row loss, converged flag, iterations, deciding stage,
  and the stages that hit an iteration cap;
- :class:`Report` -- the records of every batch of one call, concatenated;
  :meth:`Report.info` is the ``info`` Bunch of ``transform(X, return_info=True)``
  and :meth:`Report.warn` emits one aggregated ``ConvergenceWarning`` that
  names the parameter to raise;
- :func:`warn_user` -- ``warnings.warn`` pointed at the first frame outside
  skinvert and scikit-learn (the caller's line, also through ``fit_transform``,
  ``score`` or a Pipeline);
- :func:`progress` -- a progress bar over rows for ``verbose >= 1``.
"""

import sys
import time

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Bunch

from .._warnings import warn_user

__all__ = ["BatchRecord", "DataRangeWarning", "Report", "progress", "warn_user"]


class DataRangeWarning(UserWarning):
    """X holds values the generator cannot produce, or saturated ones.

    Emitted by ``transform`` when entries of X lie outside the range of a
    bounded output activation (tanh: [-1, 1], sigmoid: [0, 1]; they are
    clipped to it), or are saturated (at or within ``sqrt(eps)`` of its bounds,
    where phi^-1 is not usable: the steps posed on phi^-1(y) treat them as
    missing).
    """


class BatchRecord:
    """Diagnostics of one batch, as host NumPy arrays (sent back by joblib workers).

    Parameters
    ----------
    n_rows : int
    """

    def __init__(self, n_rows):
        self.loss = np.zeros(n_rows)
        self.recovered = np.zeros(n_rows, dtype=bool)
        self.n_iter = np.full(n_rows, -1, dtype=np.int64)
        self.stage = np.full(n_rows, "", dtype=object)
        self.counts = {}  # stage -> rows that hit its cap (rows not known)
        self.flagged = {}  # stage -> bool (n_rows,): rows known to hit its cap

    def count(self, stage, n_bad):
        """``n_bad`` rows of the batch hit ``stage``'s iteration cap (rows not known)."""
        if int(n_bad):
            self.counts[stage] = self.counts.get(stage, 0) + int(n_bad)

    def flag(self, stage, rows):
        """The rows (bool array of the batch) that hit ``stage``'s cap."""
        rows = np.asarray(rows, dtype=bool)
        if rows.any():
            prev = self.flagged.get(stage)
            self.flagged[stage] = rows if prev is None else prev | rows


class Report:
    """Diagnostics of one ``transform`` call: the batch records, concatenated.

    Convergence is settled by the final fit: a row whose final residual is
    at rounding level (``recovered``) has converged whatever an inner cap
    said and is not counted; a stage that reports counts only (not rows) is
    capped at the number of rows of its batch that were not recovered.
    """

    def __init__(self, records, n_rows, scan=None):
        self.scan = scan
        self.n_rows = n_rows
        cat = _concat(records)
        self.loss = cat("loss", np.float64)
        self.recovered = cat("recovered", bool)
        self.n_iter = cat("n_iter", np.int64)
        self.stage = cat("stage", object)
        self.flagged, self.counts, start = {}, {}, 0
        for r in records:
            n = len(r.loss)
            for stage, rows in r.flagged.items():
                full = self.flagged.setdefault(stage, np.zeros(n_rows, dtype=bool))
                full[start : start + n] |= rows & ~r.recovered
            n_open = int(np.sum(~r.recovered))
            for stage, k in r.counts.items():
                self.counts[stage] = self.counts.get(stage, 0) + min(k, n_open)
            start += n

    @property
    def converged(self):
        bad = np.zeros(self.n_rows, dtype=bool)
        for rows in self.flagged.values():
            bad |= rows
        return ~bad

    def absorb(self, other, prefix):
        """Add the non-convergence of an earlier step (``other``, same rows),
        for the rows this report did not recover, its stages prefixed."""
        for stage, rows in other.flagged.items():
            rows = rows & ~self.recovered
            if rows.any():
                self.flagged[f"{prefix}{stage}"] = rows
        n_open = int(np.sum(~self.recovered))
        for stage, k in other.counts.items():
            if min(k, n_open):
                self.counts[f"{prefix}{stage}"] = min(k, n_open)

    def stage_counts(self):
        """``{stage: rows that did not converge there}``."""
        out = {k: int(np.sum(v)) for k, v in self.flagged.items()}
        out.update({k: out.get(k, 0) + v for k, v in self.counts.items()})
        return {k: v for k, v in out.items() if v}

    def info(self):
        """The ``info`` Bunch of ``transform(X, return_info=True)``."""
        converged = self.converged
        scan = self.scan
        zeros = np.zeros(self.n_rows, dtype=np.int64)
        return Bunch(
            loss=self.loss,
            converged=converged,
            recovered=self.recovered,
            n_iter=self.n_iter,
            stage=self.stage.astype(str),
            n_saturated=zeros if scan is None else scan.n_saturated,
            n_out_of_range=zeros if scan is None else scan.n_out_of_range,
            not_converged=self.stage_counts(),
            n_not_converged=int(self.n_rows - np.sum(converged)),
        )

    def warn(self, name, param_of):
        """One ConvergenceWarning for the call, naming the parameter of each stage."""
        counts = self.stage_counts()
        if not counts:
            return
        parts = []
        for stage, n in counts.items():
            param = param_of(stage)
            parts.append(f"{n} row(s) in {stage}" + (f" (raise {param})" if param else ""))
        warn_user(
            f"{name} did not converge on {'; '.join(parts)}, of {self.n_rows} rows. Rows "
            "whose final fit is exact are not counted; transform(X, return_info=True) "
            "gives the per-row loss, converged flag and stage.",
            ConvergenceWarning,
        )

    def warn_inexact(self, name):
        """A ConvergenceWarning for the rows whose final fit is not at rounding
        level although the inverter was told the signals are clean (no
        noise level, no lambda): their supports were not recovered, or X is
        noisy. Never silent: these rows' codes are not the exact inverse."""
        bad = ~self.recovered & np.isfinite(self.loss)
        n_bad = int(np.sum(bad))
        if not n_bad:
            return
        warn_user(
            f"{name} did not fit {n_bad} of {self.n_rows} rows exactly (largest loss "
            f"{float(np.max(self.loss[bad])):.3g}) although no noise level was given: "
            "if X is noisy, set noise_std; otherwise the supports of these rows were "
            "not recovered (the paper's conditions may fail there): try HybridInverter. "
            "transform(X, return_info=True) gives the per-row loss and 'recovered' flag.",
            ConvergenceWarning,
        )


def _concat(records):
    def cat(name, dtype):
        parts = [getattr(r, name) for r in records]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return cat


def progress(total, name, enabled):
    """A progress bar over ``total`` rows (tqdm.auto when installed), or None."""
    if not enabled or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _TextBar(total, name)
    return tqdm(total=total, desc=name, unit="row", leave=True)


class _TextBar:
    """A one-line progress bar on stderr (used when tqdm is not installed)."""

    def __init__(self, total, name):
        self.total, self.name, self.n = total, name, 0
        self.t0 = time.perf_counter()

    def update(self, k):
        self.n += k
        dt = time.perf_counter() - self.t0
        rate = self.n / dt if dt > 0 else float("inf")
        left = (self.total - self.n) / rate if rate > 0 else float("inf")
        frac = self.n / self.total
        bar = "#" * int(20 * frac)
        sys.stderr.write(
            f"\r{self.name}: {100 * frac:3.0f}% |{bar:<20}| {self.n}/{self.total} rows "
            f"[{dt:.1f} s, {rate:.1f} rows/s, {left:.1f} s left]"
        )
        sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
        sys.stderr.flush()
