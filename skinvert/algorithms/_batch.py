"""The problem of one batch, shared by every algorithm: :class:`Batch`.

A batch holds the signals ``Y`` (missing entries set to 0), the observed mask
``obs`` (1.0 observed, 0.0 missing), the generator's ``W_0..W_L``, ``b_0..b_L``
in the batch's namespace and dtype, phi, an optional linear measurement
``A`` (``y = A G(z) + e``), the namespace ``xp`` and the step bounds
``lambda_max(W_i^T W_i)`` (computed once per generator). It replaces the long
argument lists ``(Y, obs, weights, biases, activation, xp, measurement)``.
"""

import numpy as np

from .._array_api import to_numpy
from .gradient_descent import loss_and_gradient
from .oracle import inverse_target

__all__ = ["Batch", "PursuitResult", "lipschitz_constants"]


def lipschitz_constants(weights):
    """``lambda_max(W_i^T W_i)`` of every layer (computed once per generator, on host)."""
    out = []
    for W in weights:
        W = np.asarray(to_numpy(W))
        out.append(float(np.linalg.eigvalsh(W.T @ W)[-1]))
    return tuple(out)


def fits_to_rounding(loss, Y, obs, xp):
    """Rows whose loss ``1/2 ||r||^2`` is at rounding level: ``||r|| <= sqrt(eps)
    ||obs * y||`` (``loss <= eps ||obs * y||^2 / 2``), i.e. recovered."""
    energy = 0.5 * xp.sum((obs * Y) ** 2, axis=1)
    return xp.isfinite(loss) & (loss <= float(xp.finfo(Y.dtype).eps) * energy)


def lipschitz_of(W, xp):
    """``lambda_max(W^T W)`` of one matrix in its namespace (e.g. ``A W_L``)."""
    return float(xp.max(xp.linalg.eigvalsh(W.T @ W)))


class Batch:
    """One batch of signals and the generator they are inverted through.

    Parameters
    ----------
    Y : array of shape (B, n)
        Signals, missing entries set to 0 (with a measurement: (B, m)).
    obs : array of shape (B, n)
        1.0 on observed entries, 0.0 on missing ones.
    weights, biases : lists of arrays
        ``W_0..W_L``, ``b_0..b_L`` in ``xp``, in Y's dtype and device.
    activation : Activation
        The output activation phi.
    xp : namespace
    measurement : Measurement or None
        Linear measurements ``y = A G(z)``.
    lipschitz : sequence of float or None
        ``lambda_max(W_i^T W_i)``, i = 0..L (None: computed here).
    """

    def __init__(
        self, Y, obs, weights, biases, activation, xp, *, measurement=None, lipschitz=None,
        image_gram=None,
    ):
        self.Y = Y
        self.obs = obs
        self.weights = list(weights)
        self.biases = None if biases is None else list(biases)  # None: bound layers
        self.activation = activation
        self.xp = xp
        self.measurement = measurement
        self._lipschitz = None if lipschitz is None else tuple(lipschitz)
        self._target = None
        self._image_gram = image_gram

    @property
    def lipschitz(self):
        """``lambda_max(W_i^T W_i)``, i = 0..L (computed here on first use when not given)."""
        if self._lipschitz is None:
            self._lipschitz = tuple(lipschitz_of(W, self.xp) for W in self.weights)
        return self._lipschitz

    @property
    def dtype(self):
        return self.Y.dtype

    @property
    def n_layers(self):
        """``L``: the number of hidden layers."""
        return len(self.weights) - 1

    def inverse_target(self):
        """``(U, w)``: phi^-1(Y) and its 0/1 usable-entry weights (computed once)."""
        if self._target is None:
            self._target = inverse_target(self.Y, self.obs, self.activation, self.xp)
        return self._target

    def image_gram(self):
        """``W_L^T W_L`` of the dense image layer (computed once, shared with
        the batches :meth:`take` makes)."""
        if self._image_gram is None:
            W = self.weights[-1]
            self._image_gram = self.xp.matrix_transpose(W) @ W
        return self._image_gram

    def take(self, idx):
        """The batch of the rows ``idx`` (same generator and measurement)."""
        xp = self.xp
        return Batch(
            xp.take(self.Y, idx, axis=0),
            xp.take(self.obs, idx, axis=0),
            self.weights,
            self.biases,
            self.activation,
            xp,
            measurement=self.measurement,
            lipschitz=self._lipschitz,
            image_gram=self._image_gram,
        )

    def replace(self, **changes):
        """A copy with some of ``weights``, ``biases``, ``measurement``, ``lipschitz`` replaced."""
        kw = dict(measurement=self.measurement, lipschitz=self._lipschitz)
        kw.update({k: v for k, v in changes.items() if k in kw})
        return Batch(
            self.Y,
            self.obs,
            changes.get("weights", self.weights),
            changes.get("biases", self.biases),
            self.activation,
            self.xp,
            **kw,
        )

    def loss(self, Z, gamma=0.0):
        """The loss of eq. 1 per row, ``1/2 ||obs (G(z) - y)||^2 + gamma/2 ||z||^2``."""
        loss, _ = loss_and_gradient(
            Z,
            self.Y,
            self.obs,
            self.weights,
            self.biases,
            self.activation,
            self.xp,
            alpha=gamma,
            measurement=self.measurement,
            gradient=False,
        )
        return loss


class PursuitResult:
    """Estimates of a batch: ``z``, hidden layers, supports and stage counts.

    Diagnostics: ``not_converged`` counts the rows that hit each stage's
    iteration limit; ``rows`` holds, for the stages that know them, those
    rows (bool arrays of the batch); ``decided`` maps a refinement stage to
    the rows whose final estimate it produced, ``n_refresh`` counts each
    row's accepted support refreshes.
    """

    def __init__(self):
        self.z = None
        self.hidden = []
        self.supports = []
        self.not_converged = {}
        self.rows = {}
        self.decided = {}
        self.n_refresh = None
        self._loss = None  # (z, loss of eq. 1 per row) where a stage computed it

    def set_loss(self, loss):
        """Record the loss of eq. 1 (``gamma = 0``) of every row at the current ``z``."""
        self._loss = (self.z, loss)

    def known_loss(self):
        """The recorded loss if it is that of the current ``z`` (the same
        array: every stage that moves z assigns a new one), else None."""
        if self._loss is None or self._loss[0] is not self.z:
            return None
        return self._loss[1]

    def count(self, stage, n_bad):
        """Add ``n_bad`` rows that hit ``stage``'s iteration limit."""
        self.not_converged[stage] = self.not_converged.get(stage, 0) + int(n_bad)

    def flag(self, stage, rows, xp):
        """The rows (bool array of the batch) that hit ``stage``'s limit; counted too."""
        prev = self.rows.get(stage)
        self.rows[stage] = rows if prev is None else prev | rows
        self.count(stage, int(xp.sum(xp.astype(rows, xp.int32))))

    def unflag(self, stage, rows, xp):
        """Clear ``stage``'s flag on the rows (bool array of the batch) whose
        estimate a later stage replaced; the count follows."""
        prev = self.rows.get(stage)
        if prev is None:
            return
        self.rows[stage] = prev & ~rows
        self.not_converged[stage] = int(xp.sum(xp.astype(self.rows[stage], xp.int32)))

    def mark(self, stage, rows):
        """The rows (bool array of the batch) whose estimate ``stage`` just replaced."""
        for other in self.decided:
            self.decided[other] = self.decided[other] & ~rows
        self.decided[stage] = rows if stage not in self.decided else self.decided[stage] | rows
