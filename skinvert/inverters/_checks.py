"""Checks of ``fit`` and ``transform`` inputs: the generator argument and X's range."""

import os
import sys

import numpy as np

from .._array_api import get_namespace, to_numpy
from ..algorithms.oracle import inverse_target
from ..generator import ReLUGenerator
from ._diagnostics import DataRangeWarning, warn_user

__all__ = ["RANGES", "Scan", "clip_to_range", "range_warning", "resolve_generator", "scan_rows"]

#: The closed range of each bounded output activation.
RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}

#: A row holding a value beyond phi's range by more than this share of the
#: range's width is clipped to the range: no small noise on an output of phi
#: puts it there, and fitting phi(u) to values beyond the range drives u (and
#: the codes) without bound. Rows whose values stay closer to the range are
#: kept as observed (small noise on nearly saturated outputs).
CLIP_MARGIN = 0.05

_HOW = (
    "pass a ReLUGenerator, the name of a pretrained one (see "
    "skinvert.datasets.list_pretrained_generators(), loaded by "
    "skinvert.datasets.load_pretrained_generator), a .npz/.safetensors file "
    "(skinvert.load_generator) or a PyTorch module (converted by skinvert.io.from_torch)"
)


def resolve_generator(generator, owner):
    """The :class:`ReLUGenerator` that ``generator=`` designates (called in ``fit``).

    Accepts a ReLUGenerator, a pretrained name, a ``.npz``/``.safetensors``
    path or a ``torch.nn.Module``; anything else (None included) is a
    TypeError that says what to pass.
    """
    if isinstance(generator, ReLUGenerator):
        return generator
    if generator is None:
        raise TypeError(f"{owner} needs a generator: {_HOW}.")
    if isinstance(generator, (str, bytes, os.PathLike)):
        path = os.fsdecode(generator)
        if path.lower().endswith((".npz", ".safetensors")):
            from ..io import load_generator

            return load_generator(path)
        from ..datasets import list_pretrained_generators, load_pretrained_generator

        names = list_pretrained_generators()
        if path not in names:
            raise ValueError(
                f"{owner}: generator={path!r} is neither a pretrained generator "
                f"({', '.join(names) or 'none shipped'}) nor a .npz/.safetensors file."
            )
        return load_pretrained_generator(path)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(generator, torch.nn.Module):
        from ..io import from_torch

        return from_torch(generator)
    raise TypeError(f"{owner}: generator must be a ReLUGenerator, got "
                    f"{type(generator).__name__}; {_HOW}.")


class Scan:
    """Per-row counts of one pass over X (host arrays of shape (n_samples,))."""

    def __init__(self, n):
        self.n_observed = np.zeros(n, dtype=np.int64)
        self.n_out_of_range = np.zeros(n, dtype=np.int64)
        self.n_saturated = np.zeros(n, dtype=np.int64)
        self.n_clipped = np.zeros(n, dtype=np.int64)
        self.max_abs = 0.0


def scan_rows(X, batches, activation, *, bounded, needs_inverse, owner):
    """One pass over X, batch by batch: empty rows (error), out-of-range and saturated entries.

    Raises a ValueError naming the rows left with nothing to invert: all NaN,
    or (for the inverters posed on phi^-1(y), ``needs_inverse``) every
    observed entry saturated. :func:`range_warning` reports the out-of-range
    and saturated entries after the transform.
    """
    xp, _ = get_namespace(X)
    scan = Scan(X.shape[0])
    lo_hi = RANGES.get(activation.name) if bounded else None
    for sl in batches:
        Xb = X[sl, ...]
        missing = xp.isnan(Xb)
        obs = ~missing
        scan.n_observed[sl] = _host(xp.sum(xp.astype(obs, xp.int64), axis=1))
        if lo_hi is None:
            continue
        lo, hi = lo_hi
        Y = xp.where(missing, xp.zeros_like(Xb), Xb)
        out = obs & ((Y < lo) | (Y > hi))
        scan.n_out_of_range[sl] = _host(xp.sum(xp.astype(out, xp.int64), axis=1))
        far = obs & (clip_to_range(Y, activation, xp) != Y)
        scan.n_clipped[sl] = _host(xp.sum(xp.astype(far, xp.int64), axis=1))
        _, w = inverse_target(xp.clip(Y, lo, hi), xp.astype(obs, Y.dtype), activation, xp)
        sat = obs & (w == 0)
        scan.n_saturated[sl] = _host(xp.sum(xp.astype(sat, xp.int64), axis=1))
        scan.max_abs = max(scan.max_abs, float(xp.max(xp.abs(Y))))
    empty = np.flatnonzero(scan.n_observed == 0)
    if empty.size:
        raise ValueError(
            f"{empty.size} row(s) of X have no observed entry (all NaN), e.g. row "
            f"{int(empty[0])}: there is nothing to invert."
        )
    if lo_hi is not None and needs_inverse:
        lo, hi = lo_hi
        dead = np.flatnonzero(scan.n_saturated >= scan.n_observed)
        if dead.size:
            raise ValueError(
                f"{dead.size} row(s) of X have no usable entry (every observed entry is "
                f"saturated: at, beyond or within sqrt(eps) of the bounds [{lo:g}, {hi:g}] of "
                f"the generator's {activation.name} output), e.g. row {int(dead[0])}: there is "
                f"nothing for {owner} to invert (it works on phi^-1(X)). Check the scaling of "
                "X, or use GradientDescentInverter, which keeps saturated values."
                + _unscaled_hint(scan, activation.name, lo, hi)
            )
    return scan


def range_warning(scan, activation, *, bounded, needs_inverse, owner, recovered):
    """Warn about entries outside phi's range (always) and saturated entries
    (for the inverters posed on phi^-1(y), in rows not ``recovered`` only)."""
    lo_hi = RANGES.get(activation.name) if bounded else None
    if lo_hi is None:
        return
    name, (lo, hi) = activation.name, lo_hi
    n_out = int(scan.n_out_of_range.sum())
    n_obs = int(scan.n_observed.sum())
    msgs = []
    n_clip = int(scan.n_clipped.sum())
    if n_clip:  # a value just outside the range is noise on a saturated output: no warning
        rows = int(np.sum(scan.n_out_of_range > 0))
        m = CLIP_MARGIN * (hi - lo)
        msgs.append(
            f"{n_out} of {n_obs} observed entries of X (in {rows} row(s)) lie outside the "
            f"range [{lo:g}, {hi:g}] of the generator's {name} output (largest |x| = "
            f"{scan.max_abs:.3g}): {n_clip} of them, in the rows holding a value beyond it by "
            f"more than {m:g}, were clipped to the range, the {n_out - n_clip} others kept "
            "(small noise on a saturated output)"
            + ("; the steps posed on phi^-1(X) treat all of them as missing." if needs_inverse
               else ".")
        )
        if n_clip > 0.25 * n_obs:
            msgs.append(_unscaled_hint(scan, name, lo, hi).strip())
    sat = np.where(recovered, 0, scan.n_saturated)
    n_sat = int(sat.sum())
    if needs_inverse and n_sat:
        rows = int(np.sum(sat > 0))
        worst = float(np.max(sat / np.maximum(scan.n_observed, 1)))
        msgs.append(
            f"{n_sat} of {n_obs} observed entries (in {rows} row(s) not fitted exactly, up to "
            f"{100 * worst:.0f} % of a row) are saturated (at or within sqrt(eps) of the "
            f"bounds, or clipped): phi^-1 is not usable there, so {owner} treats them as "
            "missing in its layer-wise steps (the debiasing keeps them)."
        )
    if msgs:
        warn_user(f"{owner}: " + " ".join(msgs), DataRangeWarning)


def _unscaled_hint(scan, name, lo, hi):
    """A hint when X's values reach far beyond phi's range (e.g. 0..255 images)."""
    if scan.max_abs <= 10.0 * max(abs(lo), abs(hi)):
        return ""
    fix = "X / 127.5 - 1" if name == "tanh" else "X / 255"
    return (f" X looks unscaled (values up to {scan.max_abs:.3g}): scale it to the output's "
            f"range [{lo:g}, {hi:g}], e.g. {fix} for 8-bit images.")


def clip_to_range(Y, activation, xp):
    """Y with the rows that hold a value beyond a bounded phi's range by more than
    ``CLIP_MARGIN`` times its width clipped to the range (unchanged otherwise)."""
    lo_hi = RANGES.get(activation.name)
    if lo_hi is None:
        return Y
    lo, hi = lo_hi
    m = CLIP_MARGIN * (hi - lo)
    far = xp.any((Y < lo - m) | (Y > hi + m), axis=1, keepdims=True)
    return xp.where(far, xp.clip(Y, lo, hi), Y)


def _host(a):
    return np.asarray(to_numpy(a))
