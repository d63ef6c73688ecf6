"""Compact passive sets of the batched Lawson-Hanson method.

Every row (sample) of :func:`~skinvert.solvers._lawson_hanson.nnls_lawson_hanson`
keeps a passive set ``P`` of columns and the inverse ``(G_PP)^-1`` of its
Gram block. :class:`PassiveSet` stores them compactly, in ``c`` *slots* per
row (``c`` the largest passive set of the batch plus the block being added,
not the layer width ``k``):

- ``idx`` (B, c): the column held by each slot, ``k`` for an empty slot;
- ``M`` (B, c, c): ``(G_PP)^-1`` in slot order, zero on empty slots.

Adding a block ``J`` of columns appends ``|J|`` slots and updates ``M`` by the
Schur complement of the new block (a rank-``|J|`` update); dropping columns
downdates ``M`` by the block ``M_DD`` of the dropped slots (a rank-``|D|``
downdate) and empties their slots; :meth:`PassiveSet.compact` moves the
occupied slots first and trims ``c``. So every step costs ``O(c^2 |J|)``
per row in matrix products, with ``c <= rank(G) + |J|``, instead of the
``O(k^2 |J|)`` of an inverse embedded in ``k x k`` arrays (the wide layers
of the paper's Figure 4: ``k = n_1`` up to 1250 against ``c <= n = 625``).
"""

from .._array_api import device
from .._linalg import padded_indices, scatter_rows

__all__ = ["PassiveSet"]


def _pad_cols(a, n, xp, value=0):
    """``a`` (B, c, ...) with ``n`` entries ``value`` appended along axis 1."""
    if n == 0:
        return a
    shape = (a.shape[0], n) + tuple(a.shape[2:])
    return xp.concat([a, xp.full(shape, value, dtype=a.dtype, device=device(a))], axis=1)


def _transposed(a, xp):
    """``a`` (B, m, n) transposed to a C-contiguous (B, n, m) array (stacked
    products with a transposed view run several times slower on NumPy)."""
    B, m, n = a.shape
    return xp.reshape(xp.reshape(xp.permute_dims(a, (0, 2, 1)), (-1,)), (B, n, m))


def _rows(M, sel, xp):
    """``M[b][sel[b], :]`` for M (B, c, n), sel (B, d): one flat row gather."""
    B, c, n = M.shape
    d = sel.shape[1]
    base = xp.arange(B, dtype=sel.dtype, device=device(sel))[:, None] * c
    flat = xp.reshape(sel + base, (-1,))
    return xp.reshape(xp.take(xp.reshape(M, (B * c, n)), flat, axis=0), (B, d, n))


def _take2(M, sel, xp):
    """``M[b][sel[b]][:, sel[b]]`` for a symmetric M (B, c, c), sel (B, d)."""
    R = xp.permute_dims(_rows(M, sel, xp), (0, 2, 1))  # M[:, sel] by symmetry
    return _rows(R, sel, xp)


class PassiveSet:
    """Passive sets and inverse Gram blocks of a batch, in slots (see the module notes).

    Parameters
    ----------
    idx : int array (B, c)
        Column of every slot (``k``: empty).
    M : array (B, c, c)
        ``(G_PP)^-1`` in slot order (zero on empty slots), up to the pending
        downdate ``- L @ R`` of the columns dropped since the last update.
    k : int
        Number of columns.
    L, R : arrays (B, c, d) and (B, d, c), optional
        Pending downdate: the inverse is ``M - L @ R`` (see :meth:`drop`).
    """

    def __init__(self, idx, M, k, L=None, R=None):
        self.idx = idx
        self.M = M
        self.k = k
        self.L = L
        self.R = R
        self._slot = None

    @classmethod
    def empty(cls, B, k, dtype, dev, xp):
        idx = xp.full((B, 0), k, dtype=xp.int64, device=dev)
        return cls(idx, xp.zeros((B, 0, 0), dtype=dtype, device=dev), k)

    @property
    def c(self):
        return self.idx.shape[1]

    @property
    def occupied(self):
        """(B, c) bool: slots that hold a passive column."""
        return self.idx < self.k

    def slot(self, xp):
        """(B, k) slot of every column, ``c`` off the passive set.

        The inverse of ``idx``, by sorting: the keys ``[idx, 0..k-1]`` sorted
        stably put a passive column's slot entry just before its own entry.
        """
        if self._slot is None:
            B, c = self.idx.shape
            k = self.k
            ar = xp.arange(k, dtype=self.idx.dtype, device=device(self.idx))
            keys = xp.concat([self.idx, xp.broadcast_to(ar[None, :], (B, k))], axis=1)
            order = xp.argsort(keys, axis=1, stable=True)
            pos = xp.argsort(order, axis=1, stable=True)[:, c:]  # where column j's own entry sits
            prev = xp.take_along_axis(order, xp.clip(pos - 1, min=0), axis=1)
            hit = (pos > 0) & (prev < c)
            hit = hit & (xp.take_along_axis(keys, prev, axis=1) == ar[None, :])
            self._slot = xp.where(hit, prev, xp.full_like(prev, c))
        return self._slot

    def mask(self, xp):
        """(B, k) bool: the passive sets ``P``."""
        return self.slot(xp) < self.c

    def gather(self, v, xp):
        """(B, c): ``v`` (B, k) on the slots (zero on empty ones)."""
        return xp.take_along_axis(_pad_cols(v, 1, xp), self.idx, axis=1)

    def scatter(self, vs, xp):
        """(B, k): ``vs`` (B, c) put back on the columns (zero off ``P``)."""
        vs = xp.where(self.occupied, vs, xp.zeros_like(vs))
        return xp.take_along_axis(_pad_cols(vs, 1, xp), self.slot(xp), axis=1)

    def solve(self, r, xp):
        """``x_P = (G_PP)^-1 r_P`` (zero off ``P``) for r (B, k)."""
        return self.scatter(self._apply(self.gather(r, xp)[:, :, None])[:, :, 0], xp)

    def _apply(self, A):
        """``(M - L R) @ A`` for A (B, c, p)."""
        out = self.M @ A
        return out if self.L is None else out - self.L @ (self.R @ A)

    def settled(self, xp):
        """The same sets with the pending downdate applied to ``M``."""
        if self.L is None:
            return self
        return PassiveSet(self.idx, self.M - self.L @ self.R, self.k)

    # -- rows ------------------------------------------------------------------

    def take_rows(self, sub, xp):
        if sub is None:
            return self
        t = [None if a is None else xp.take(a, sub, axis=0) for a in (self.L, self.R)]
        return PassiveSet(xp.take(self.idx, sub, axis=0), xp.take(self.M, sub, axis=0), self.k, *t)

    def padded(self, c, xp):
        """The same sets in ``c >= self.c`` slots."""
        n = c - self.c
        if n == 0:
            return self
        self = self.settled(xp)
        M = _pad_cols(self.M, n, xp)
        M = xp.concat([M, xp.zeros((M.shape[0], c, n), dtype=M.dtype, device=device(M))], axis=2)
        return PassiveSet(_pad_cols(self.idx, n, xp, value=self.k), M, self.k)

    def select(self, rows, other, xp):
        """Per row: ``self`` where ``rows`` (B,) holds, else ``other``."""
        c = max(self.c, other.c)
        a, b = self.settled(xp).padded(c, xp), other.settled(xp).padded(c, xp)
        idx = xp.where(rows[:, None], a.idx, b.idx)
        return PassiveSet(idx, xp.where(rows[:, None, None], a.M, b.M), self.k)

    def put_rows(self, part, live, xp):
        """``self`` with the rows where ``live`` holds replaced, in order, by ``part``."""
        if part.idx.shape[0] == self.idx.shape[0]:
            return part.select(live, self, xp)
        c = max(self.c, part.c)
        a, b = self.settled(xp).padded(c, xp), part.settled(xp).padded(c, xp)
        return PassiveSet(
            scatter_rows(a.idx, b.idx, live, xp), scatter_rows(a.M, b.M, live, xp), self.k
        )

    def compact(self, xp, *, slack=0):
        """Occupied slots first, ``c`` trimmed to the largest passive set
        (left as is while at most ``slack`` slots would go)."""
        occ = self.occupied
        n = int(xp.max(xp.sum(xp.astype(occ, xp.int32), axis=1))) if occ.shape[0] else 0
        if self.c - n <= slack:
            return self
        self = self.settled(xp)
        perm = xp.argsort(xp.astype(~occ, xp.int32), axis=1, stable=True)[:, :n]
        idx = xp.take_along_axis(self.idx, perm, axis=1)
        keep = xp.astype(idx < self.k, self.M.dtype)
        # Empty slots keep the rounding left by drops (see drop): zero it.
        M = keep[:, :, None] * _take2(self.M, perm, xp) * keep[:, None, :]
        return PassiveSet(idx, M, self.k)

    # -- updates ---------------------------------------------------------------

    def add(self, G, J, valid, xp, *, r=None, x=None, aggressive=None):
        """Add the columns ``J`` (B, q) where ``valid`` (Schur-complement update).

        With ``V = M G_{P,J}`` and ``S = G_JJ - G_{J,P} V``, the inverse on
        ``P + J`` is ``[[M + V S^-1 V^T, -V S^-1], [-S^-1 V^T, S^-1]]``.
        Columns whose Schur complement is not clearly positive (dependent on
        ``P`` to rounding) are not added.

        With ``r`` (B, k), the least squares on ``P + J`` is computed first
        from the same blocks (``z_J = S^-1 (r_J - V^T r_P)``,
        ``z_P = M r_P - V z_J``), and the first move of Lawson-Hanson's inner
        loop is taken before the update: the columns the inner loop would
        drop at once (``z_j <= 0`` and, on ``P``, ``x_j <= 0`` or the row
        ``aggressive``) are dropped, those of ``J`` by not adding them.

        Returns
        -------
        new : PassiveSet
        pending : tuple or None
            With ``r``: ``(drop, fresh)``, the columns of ``P`` still to drop
            ((B, k) bool) and the rows that dropped any column ((B,) bool).
        """
        B, q = J.shape
        k, c = self.k, self.c
        dt = self.M.dtype
        eps = float(xp.finfo(dt).eps)
        if G.ndim == 2:
            GJ = xp.reshape(xp.take(G, xp.reshape(J, (-1,)), axis=0), (B, q, k))
        else:
            GJ = xp.take_along_axis(G, xp.broadcast_to(J[:, :, None], (B, q, k)), axis=1)
        GJJ = xp.take_along_axis(GJ, xp.broadcast_to(J[:, None, :], (B, q, q)), axis=2)
        # G_{P,J} (B, c, q), zero on empty slots; G symmetric.
        GPJ = xp.take_along_axis(
            _pad_cols(xp.permute_dims(GJ, (0, 2, 1)), 1, xp),
            xp.broadcast_to(self.idx[:, :, None], (B, c, q)),
            axis=1,
        )
        V = self._apply(GPJ)  # (M - L R) G_{P,J}
        S = GJJ - _transposed(GPJ, xp) @ V
        d_S = xp.linalg.diagonal(S)
        d_G = xp.linalg.diagonal(GJJ)
        ok = valid & (d_S > 1e3 * eps * k * xp.where(d_G > 0, d_G, xp.ones_like(d_G)))
        eye = xp.eye(q, dtype=dt, device=device(self.M))
        pending = None
        if r is not None:
            okf = xp.astype(ok, dt)
            Sm = okf[:, :, None] * S * okf[:, None, :] + (1.0 - okf)[:, :, None] * eye
            rP = self.gather(r, xp)
            rJ = xp.take_along_axis(r, J, axis=1)
            b = (rJ - (rP[:, None, :] @ V)[:, 0, :]) * okf
            zJ = xp.linalg.solve(Sm, b[:, :, None])[:, :, 0] * okf
            zP = (self._apply(rP[:, :, None]) - V @ zJ[:, :, None])[:, :, 0]
            E = ok & (zJ <= 0)
            DP = self.occupied & (zP <= 0) & ((self.gather(x, xp) <= 0) | aggressive[:, None])
            fresh = xp.any(E, axis=1) | xp.any(DP, axis=1)
            pending = (self.scatter(DP, xp), fresh)
            ok = ok & ~E
            # Keep only the columns added (a block of q' <= q slots).
            n_ok = xp.sum(xp.astype(ok, xp.int32), axis=1)
            q2 = max(int(xp.max(n_ok)), 1)
            if q2 < q:
                sel = xp.argsort(xp.astype(~ok, xp.int32), axis=1, stable=True)[:, :q2]
                J, ok = (xp.take_along_axis(a, sel, axis=1) for a in (J, ok))
                V = xp.take_along_axis(V, xp.broadcast_to(sel[:, None, :], (B, c, q2)), axis=2)
                S = _take2(S, sel, xp)
                q = q2
                eye = xp.eye(q, dtype=dt, device=device(self.M))
        okf = xp.astype(ok, dt)
        # Unused slots: S = I there, and their column of U is zero.
        S = okf[:, :, None] * S * okf[:, None, :] + (1.0 - okf)[:, :, None] * eye
        V = V * okf[:, None, :]
        U = xp.concat([V, -xp.broadcast_to(eye, (B, q, q))], axis=1) * okf[:, None, :]
        Z = xp.linalg.solve(S, _transposed(U, xp))  # (B, q, c + q): S^-1 U^T
        # M + U S^-1 U^T by blocks, with the pending downdate folded into the
        # top-left product: one pass over the c x c block.
        Zc = Z[:, :, :c]
        if self.L is None:
            TL = self.M + V @ Zc
        else:
            TL = self.M + xp.concat([V, -self.L], axis=2) @ xp.concat([Zc, self.R], axis=1)
        top = xp.concat([TL, V @ Z[:, :, c:]], axis=2)
        M = xp.concat([top, -(okf[:, :, None] * Z)], axis=1)
        idx = xp.concat([self.idx, xp.where(ok, J, xp.full_like(J, k))], axis=1)
        return PassiveSet(idx, M, k), pending

    def drop(self, drop, xp):
        """Remove the columns where ``drop`` (B, k) holds and empty their slots.

        The inverse on the remaining columns is the block downdate
        ``M - M_{:,D} (M_DD)^-1 M_{D,:}``; it is kept pending as the factors
        ``L = M_{:,D}``, ``R = (M_DD)^-1 M_{D,:}`` (``O(c |D|)`` per row, no
        pass over ``M``) and applied once by :meth:`settled` before the next
        update. Rows and columns ``D`` of the inverse are then zero up to
        rounding; every product masks empty slots, and :meth:`compact` zeroes
        them.
        """
        ds = self.gather(drop, xp) & self.occupied  # (B, c) slots to empty
        if not bool(xp.any(ds)):
            return self
        dt = self.M.dtype
        D, valid = padded_indices(ds, xp)
        B, d = D.shape
        vf = xp.astype(valid, dt)
        Ct = _rows(self.M, D, xp)  # (B, d, c): rows D of the current inverse
        if self.L is not None:
            Ct = Ct - _rows(self.L, D, xp) @ self.R
        Ct = Ct * vf[:, :, None]
        eye = xp.eye(d, dtype=dt, device=device(Ct))
        MDD = xp.take_along_axis(Ct, xp.broadcast_to(D[:, None, :], (B, d, d)), axis=2)
        MDD = vf[:, :, None] * MDD * vf[:, None, :] + (1.0 - vf)[:, :, None] * eye
        R = xp.linalg.solve(MDD, Ct)
        L = _transposed(Ct, xp)
        if self.L is not None:
            L, R = xp.concat([self.L, L], axis=2), xp.concat([self.R, R], axis=1)
        idx = xp.where(ds, xp.full_like(self.idx, self.k), self.idx)
        return PassiveSet(idx, self.M, self.k, L, R)
