"""Output activations phi of a generator, with phi', phi^-1 and their metadata.

The generator's last layer is ``G(z) = phi(W_L x_L + b_L)`` (paper, eq. 3).
Every activation here is strictly increasing, so phi^-1 exists on phi's
range; the pursuit algorithms need it (Algorithm 2, Algorithm 6) or need
phi' (Algorithm 3, the Oracle's Gauss-Newton debiasing).

Saturated values
----------------
``tanh`` maps onto the open interval (-1, 1) and ``sigmoid`` onto (0, 1). In
floating point, large pre-activations round to the end points exactly
(``tanh(20.) == 1.0`` in float64, ``tanh(9.) == 1.0`` in float32), where
phi^-1 is infinite and phi' is zero. ``inverse`` returns NaN for such an entry
(and for any value outside phi's range): the inverters treat it as a
*missing* entry, so a saturated pixel never produces an infinite target or
loses its sample. Methods that use phi itself (gradient descent, the Oracle's
end-to-end debiasing) keep the saturated value as an observation.
"""

import math

__all__ = ["Activation", "get_activation", "ACTIVATIONS"]


class Activation:
    """A strictly increasing output activation ``phi`` with its derivative and inverse.

    Parameters
    ----------
    name : {"identity", "tanh", "sigmoid", "leaky_relu", "plu"}
        Which activation.
    slope : float, default=0.1
        Negative-side slope of ``leaky_relu`` (must be > 0 for an inverse) and
        outer slope ``alpha`` of ``plu``.
    c : float, default=1.0
        Half-width of the unit-slope band of ``plu``.

    Notes
    -----
    PLU (Nicolae, 2018) is ``plu(u) = max(alpha (u + c) - c, min(alpha (u - c) + c, u))``:
    slope 1 on ``[-c, c]``, slope ``alpha`` outside. It is the output
    activation of the paper's trained network (section 6.2).

    ``lipschitz_inverse`` is the Lipschitz constant ``ell`` of phi^-1 used by
    Theorem 2 and Algorithm 2; it is infinite for ``tanh`` and ``sigmoid`` on
    their whole range, so :meth:`lipschitz_inverse_on` gives the constant over
    the values actually observed.
    """

    def __init__(self, name, *, slope=0.1, c=1.0):
        if name not in ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {sorted(ACTIVATIONS)}, got {name!r}."
            )
        slope = float(slope)
        c = float(c)
        if name in ("leaky_relu", "plu") and not (slope > 0 and math.isfinite(slope)):
            raise ValueError(
                f"{name} needs a finite slope > 0 to be invertible, got slope={slope}."
            )
        if name == "plu" and not (c > 0 and math.isfinite(c)):
            raise ValueError(f"plu needs a finite c > 0, got c={c}.")
        self.name = name
        self.slope = slope
        self.c = c

    # -- metadata ---------------------------------------------------------
    @property
    def piecewise_linear(self):
        """True when phi is piecewise linear (phi^-1 is then exact and cheap)."""
        return self.name in ("identity", "leaky_relu", "plu")

    @property
    def lipschitz_inverse(self):
        """Global Lipschitz constant of phi^-1 (``inf`` for tanh and sigmoid)."""
        if self.name == "identity":
            return 1.0
        if self.name in ("leaky_relu", "plu"):
            return max(1.0, 1.0 / self.slope)
        return math.inf

    def params(self):
        """The keyword arguments that rebuild this activation.

        Returns
        -------
        params : dict
            ``{"slope": ...}`` for leaky_relu, ``{"slope": ..., "c": ...}``
            for plu, ``{}`` otherwise.
        """
        if self.name == "leaky_relu":
            return {"slope": self.slope}
        if self.name == "plu":
            return {"slope": self.slope, "c": self.c}
        return {}

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.params().items())
        return f"Activation({self.name!r}{extra})"

    def __eq__(self, other):
        return (
            isinstance(other, Activation)
            and self.name == other.name
            and self.params() == other.params()
        )

    def __hash__(self):
        return hash((self.name, tuple(self.params().items())))

    def __setstate__(self, state):
        # Unpickled or skops-loaded state is validated like a new Activation.
        try:
            name, slope, c = state["name"], state["slope"], state["c"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "Cannot restore an Activation: the saved state needs 'name', 'slope' "
                f"and 'c', got {type(state).__name__}."
            ) from exc
        self.__init__(name, slope=slope, c=c)

    # -- maps ---------------------------------------------------------------
    def __call__(self, U, xp):
        """phi(U), elementwise."""
        n = self.name
        if n == "identity":
            return U
        if n == "tanh":
            return xp.tanh(U)
        if n == "sigmoid":
            # 0.5 (1 + tanh(u/2)) is overflow-free for both signs.
            return 0.5 * (1.0 + xp.tanh(0.5 * U))
        if n == "leaky_relu":
            return xp.where(U >= 0, U, self.slope * U)
        a, c = self.slope, self.c
        return xp.maximum(a * (U + c) - c, xp.minimum(a * (U - c) + c, U))

    def derivative(self, U, xp):
        """Derivative phi'(U), elementwise (one-sided value 1 at the kinks).

        Parameters
        ----------
        U : array
            Pre-activations, in namespace ``xp``.
        xp : namespace
            The array API namespace of ``U``.

        Returns
        -------
        D : array of U's shape
            The derivative phi' at every entry.
        """
        n = self.name
        if n == "identity":
            return xp.ones_like(U)
        if n == "tanh":
            t = xp.tanh(U)
            return 1.0 - t * t
        if n == "sigmoid":
            s = 0.5 * (1.0 + xp.tanh(0.5 * U))
            return s * (1.0 - s)
        if n == "leaky_relu":
            return xp.where(U >= 0, xp.ones_like(U), xp.full_like(U, self.slope))
        inside = (U >= -self.c) & (U <= self.c)
        return xp.where(inside, xp.ones_like(U), xp.full_like(U, self.slope))

    def _derivative_at_inverse(self, Y, U, xp):
        """``phi'(phi^-1(Y))`` given ``U = phi^-1(Y)`` (NaN where undefined):
        for tanh (``1 - y^2``) and the sigmoid (``y (1 - y)``) from ``Y``
        itself, without evaluating phi at ``U`` again (a second
        transcendental pass: about 10 ms for 512 signals of 784 pixels);
        otherwise :meth:`derivative` at ``U`` (0 where ``U`` is not finite)."""
        if self.name == "tanh":
            return 1.0 - Y * Y
        if self.name == "sigmoid":
            return Y * (1.0 - Y)
        return self.derivative(xp.where(xp.isfinite(U), U, xp.zeros_like(U)), xp)

    def inverse(self, Y, xp):
        """Inverse phi^-1(Y), elementwise; NaN where Y is outside phi's open range.

        NaN in ``Y`` (a missing entry) stays NaN. For ``tanh`` and ``sigmoid``
        a value on the boundary of the range (a saturated output) gives NaN,
        which the inverters treat as a missing entry (see the module notes).

        Parameters
        ----------
        Y : array
            Outputs, in namespace ``xp``.
        xp : namespace
            The array API namespace of ``Y``.

        Returns
        -------
        U : array of Y's shape
            The inverse phi^-1 at every entry (NaN outside the range).
        """
        n = self.name
        if n == "identity":
            return Y
        if n == "tanh":
            ok = (Y > -1.0) & (Y < 1.0)
            Ys = xp.where(ok, Y, xp.zeros_like(Y))
            return xp.where(ok, xp.atanh(Ys), xp.full_like(Y, math.nan))
        if n == "sigmoid":
            ok = (Y > 0.0) & (Y < 1.0)
            Ys = xp.where(ok, Y, xp.full_like(Y, 0.5))
            return xp.where(ok, xp.log(Ys) - xp.log1p(-Ys), xp.full_like(Y, math.nan))
        if n == "leaky_relu":
            return xp.where(Y >= 0, Y, Y / self.slope)
        a, c = self.slope, self.c
        upper = (Y - c) / a + c
        lower = (Y + c) / a - c
        return xp.where(Y > c, upper, xp.where(Y < -c, lower, Y))

    def lipschitz_inverse_on(self, Y, xp):
        """Lipschitz constant of phi^-1 over the finite, in-range values of ``Y``.

        Parameters
        ----------
        Y : array
            Outputs, in namespace ``xp``.
        xp : namespace
            The array API namespace of ``Y``.

        Returns
        -------
        ell : float
            ``max 1 / phi'(phi^-1(y))`` over the entries where the inverse is
            finite (``inf`` if there are none).
        """
        if self.name != "tanh" and self.name != "sigmoid":
            return self.lipschitz_inverse
        U = self.inverse(Y, xp)
        ok = ~xp.isnan(U)
        if not bool(xp.any(ok)):
            return math.inf
        d = self.derivative(xp.where(ok, U, xp.zeros_like(U)), xp)
        return float(1.0 / xp.min(xp.where(ok, d, xp.ones_like(d))))


ACTIVATIONS = ("identity", "tanh", "sigmoid", "leaky_relu", "plu")


def get_activation(spec):
    """Build an :class:`Activation` from a name, a ``(name, params)`` pair or itself.

    Parameters
    ----------
    spec : str, (str, dict) or Activation
        E.g. ``"tanh"`` or ``("plu", {"slope": 0.1, "c": 1.0})``.

    Returns
    -------
    activation : Activation
        The activation described by ``spec``.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        return Activation(spec)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        return Activation(spec[0], **spec[1])
    raise TypeError(
        "output_activation must be a name in "
        f"{ACTIVATIONS}, a (name, params) tuple or an Activation; got {spec!r}."
    )
