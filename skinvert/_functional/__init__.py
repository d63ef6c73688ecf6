"""The functional API, as scikit-learn writes it (``sparse_encode`` -> ``_sparse_encode``).

Each public function validates its arguments (:func:`validate_params`), then
calls its private twin on a :class:`~skinvert.algorithms._batch.Batch`; the
estimators call the twins directly, with parameters validated in ``fit``.

- :func:`latent_pursuit` / :func:`_latent_pursuit` -- Algorithm 5;
- :func:`layered_basis_pursuit` / :func:`_layered_basis_pursuit` -- Algorithm 2;
- :func:`oracle_inversion` / :func:`_oracle_inversion` -- Algorithms 1 and 6.
"""

from ._common import per_layer
from ._latent_pursuit import _latent_pursuit, latent_pursuit
from ._layered_bp import _layered_basis_pursuit, layered_basis_pursuit
from ._oracle import _oracle_inversion, oracle_inversion

__all__ = [
    "_latent_pursuit",
    "_layered_basis_pursuit",
    "_oracle_inversion",
    "latent_pursuit",
    "layered_basis_pursuit",
    "oracle_inversion",
    "per_layer",
]
