"""The Mahalanobis anomaly score in a classifier's representation layer (Lee et al.; used for
jets by Cheng & Courville): class-conditional Gaussians with a shared covariance, fitted on
in-distribution training jets; the score of a jet is its smallest squared distance to a
class mean.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> z = np.concatenate([rng.normal(0, 1, (500, 2)), rng.normal(5, 1, (500, 2))])
>>> m = Mahalanobis.fit(z, np.repeat([0, 1], 500))
>>> d = m.score(np.array([[0.0, 0.0], [2.5, -10.0]]))
>>> bool(d[1] > d[0])
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hepsafe.exceptions import InputError


def _features(x: Any, name: str) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    if z.ndim != 2:
        raise InputError(f"{name}: representation must have shape (n_jets, n_features), "
                         f"got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise InputError(f"{name}: non-finite representation values")
    return z


@dataclass(frozen=True)
class Mahalanobis:
    """Class means ``(K, D)``, the shared precision matrix ``(D, D)`` and the class labels."""

    means: np.ndarray
    precision: np.ndarray
    classes: tuple[int, ...]

    @classmethod
    def fit(cls, features: Any, labels: Any, shrinkage: float = 1e-6) -> Mahalanobis:
        """Fit on ``features`` ``(n, D)`` with integer ``labels`` ``(n,)`` (each class >= 2
        jets). The pooled within-class covariance gets ``shrinkage`` times its mean
        variance added to the diagonal, so a degenerate direction does not blow up."""
        z = _features(features, "Mahalanobis.fit")
        y = np.asarray(labels).reshape(-1)
        if len(y) != len(z):
            raise InputError(f"Mahalanobis.fit: {len(y)} labels for {len(z)} jets")
        classes = tuple(int(k) for k in np.unique(y))
        means = np.stack([z[y == k].mean(axis=0) for k in classes])
        if any(int((y == k).sum()) < 2 for k in classes):
            raise InputError("Mahalanobis.fit: every class needs at least 2 jets")
        centred = z - means[np.searchsorted(np.asarray(classes), y)]
        cov = centred.T @ centred / (len(z) - len(classes))
        cov += shrinkage * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
        return cls(means=means, precision=np.linalg.inv(cov), classes=classes)

    def distances(self, features: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each jet to each class mean: ``(n, K)``."""
        z = _features(features, "Mahalanobis.score")
        if z.shape[1] != self.means.shape[1]:
            raise InputError(f"Mahalanobis.score: {z.shape[1]} features, fitted on "
                             f"{self.means.shape[1]}")
        d = z[:, None, :] - self.means[None, :, :]
        return np.einsum("nkd,de,nke->nk", d, self.precision, d)

    def score(self, features: Any) -> np.ndarray:
        """The anomaly score ``(n,)``: the smallest squared distance to a class mean."""
        return self.distances(features).min(axis=1)
