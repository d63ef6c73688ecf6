"""Shared loading, timing and SNR code of the benchmark scripts.

The scripts run from the repository root as modules (``python -m
benchmarks.NAME``), so the checkout's ``skinvert`` is imported without an
install and without editing ``sys.path``.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED_WEIGHTS = ROOT / "skinvert" / "datasets" / "data"

#: SNR values are clipped to [-CAP, CAP] dB in the summaries: an exact row is inf.
CAP = 300.0
#: A row counts as recovered at this SNR (dB).
GOOD_DB = 60.0


def result_path(name):
    """``benchmarks/results/<name>`` as a string (the scripts' default outputs)."""
    return str(RESULTS / name)


def snr_db_floored(ref, est):
    """Per-row SNR in dB with the error energy floored at 1e-300 (finite for exact rows).

    An exact row gives about 3000 dB instead of inf; ``skinvert.metrics.snr_db``
    is the unfloored definition.
    """
    num = np.sum(ref**2, axis=1)
    den = np.maximum(np.sum((ref - est) ** 2, axis=1), 1e-300)
    return 10 * np.log10(num / den)


def snr_stats(values, *, quantiles=(10, 90), cap=CAP, mean=False, frac_good=False):
    """Median and quantiles ``p<q>`` of a per-row SNR array.

    NaN (a non-finite estimate) counts as -inf; with ``cap`` set, values are
    clipped to ``[-cap, cap]`` dB. ``mean`` and ``frac_good`` add the mean and
    the fraction of rows at ``>= GOOD_DB``.
    """
    v = np.asarray(values, dtype=np.float64)
    if cap is not None:
        v = np.clip(np.where(np.isnan(v), -np.inf, v), -cap, cap)
    out = {"median": float(np.median(v))}
    for q in quantiles:
        out[f"p{q}"] = float(np.percentile(v, q))
    if mean:
        out["mean"] = float(np.mean(v))
    if frac_good:
        out["frac_ge_60db"] = float(np.mean(v >= GOOD_DB))
    return out


@contextlib.contextmanager
def timer():
    """``with timer() as t: ...`` then ``t["s"]``: the ``perf_counter`` seconds of the block."""
    t = {"s": None}
    start = time.perf_counter()
    try:
        yield t
    finally:
        t["s"] = time.perf_counter() - start


def pretrained_generator(name):
    """A shipped generator by name (``load_pretrained_generator``), with a fallback.

    When ``skinvert.datasets`` cannot load it, the ``.npz`` under
    ``skinvert/datasets/data`` is read with ``load_generator``. Returns the
    generator and a description of where it came from.
    """
    from skinvert import load_generator

    try:
        from skinvert.datasets import load_pretrained_generator

        return load_pretrained_generator(name), f"pretrained {name!r}"
    except Exception as exc:  # noqa: BLE001 (the datasets package or its weights missing)
        path = SHIPPED_WEIGHTS / (name.replace("-", "_") + ".npz")
        if not path.exists():
            raise SystemExit(f"cannot load generator {name!r}: {exc}") from exc
        rel = path.relative_to(ROOT)
        return load_generator(path), f"{rel} (load_pretrained_generator failed: {exc})"


def sha256(path):
    """Hex SHA-256 of a file."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def git_rev():
    """The checkout's commit hash, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def write_json(path, data):
    """Write ``data`` as indented JSON, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)
