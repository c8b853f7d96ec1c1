"""Class-conditional Gaussian densities on classifier features (DDU, DeDUCE): the fits.

One Gaussian per class on the penultimate features ``z`` of the training set. Three fits
(:class:`DensityConfig`), all in float64 on the host:

* ``"full"`` (the default, DDU's recipe): the class mean and the covariance ``X^T X / (n - 1)``
  of the centred features;
* ``"shrinkage"``: that covariance shrunk towards ``mu I`` (``mu`` its mean variance),
  ``(1 - s) S + s mu I``, with the Ledoit-Wolf intensity ``s`` of each class (closed form) or a
  fixed one;
* ``"pca"``: the features projected on the ``k`` leading principal components of all training
  features (one projection shared by every class, so the class densities stay comparable), and
  a full Gaussian per class in those ``k`` dimensions.

Every covariance gets diagonal jitter, increased from 0 through machine epsilon and the powers of
ten from 1e-308 up, until the Cholesky factorisation of every class succeeds.

Every fit is a :class:`~jaxcf.models.GaussianDensity` (its module holds the evaluation).

A fit on too few samples for its dimension, or on features so collinear that a class covariance
is (numerically) singular, gives densities whose log values are dominated by directions the
training features never moved in: the fit says so with a :class:`DegenerateDensityWarning`
(:class:`DensityDiagnostics` holds the numbers).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcf.core import validation
from jaxcf.models._density import GaussianDensity

Array = jax.Array

_JITTERS = (0.0, float(np.finfo(np.float64).eps), *(10.0**e for e in range(-308, 1)))

METHODS = ("full", "shrinkage", "pca")

# --- What counts as degenerate (see docs/results/density_fashion.md for the measurements). ---
#
# Samples: for n Gaussian samples in d dimensions, E[S^-1] = Sigma^-1 (n - 1) / (n - d - 2)
# (inverse Wishart), so the Mahalanobis distance of a held-out feature is inflated by that factor
# on average (and the sample covariance is singular for n <= d). At a factor of 2, half of a new
# feature's squared distance is estimation noise. Measured: the Fashion-MNIST CNN of the issue
# (1,935 to 2,068 samples per class, 1,568 dimensions) is at 4.2 to 5.3, and its full fit's
# test features sit 640 nats (median) less likely than its 20,000 training features
# (shrinkage: 140, PCA at 99%: 1.5); the bundled demo ResNet (5,000 per class, 256
# dimensions) is at 1.05, the paper's ResNet-18 (512 dimensions) at 1.1.
MAX_SAMPLE_INFLATION = 2.0
# Condition number of a class covariance (after jitter) beyond which the fit is flagged. The
# healthy fits measured stay below 1.4e6: the bundled demo ResNet at 2e4 to 9e4, the Fashion
# CNN's Ledoit-Wolf fit at 1.4e5 to 3.7e5, its PCA fits at up to 2e5 (105 components) and 1.4e6
# (256); its full fit is singular (a third of the units dead in every class, the smallest
# eigenvalues at rounding level, the condition infinite or set by the jitter). log_prob runs in
# float32, whose rounding of the centred features (relative 6e-8) is amplified by
# sqrt(condition) in the whitened coordinates: at 1e8, 6e-4 of a whitened unit per coordinate.
MAX_CONDITION = 1e8
# A coordinate is (near) constant within a class when its variance is below this share of the
# class's mean variance (its spread is under 1e-4 of a typical coordinate's). Dead ReLU units,
# the usual cause, have exactly zero variance: 477 of the Fashion CNN's 1,568 units in class 0;
# its live units lie above 1.6e-8 (1% of them below 1.6e-4).
CONSTANT_VARIANCE = 1e-8


class DegenerateDensityWarning(UserWarning):
    """A class Gaussian was fitted on too few samples for its dimension, or its covariance is
    (numerically) singular or ill-conditioned: its log densities are dominated by directions the
    training features barely span (see :class:`DensityDiagnostics`). A shrinkage or PCA fit
    (:class:`DensityConfig`) usually cures it."""


@dataclasses.dataclass(frozen=True)
class DensityConfig:
    """How the class Gaussians are fitted.

    Attributes:
      method: ``"full"`` (sample covariance, DDU's recipe), ``"shrinkage"`` (covariance shrunk
        towards ``mu I``) or ``"pca"`` (full Gaussians on the leading principal components).
      shrinkage: ``"shrinkage"`` only: the intensity ``s`` in ``[0, 1]``; ``None`` takes each
        class's Ledoit-Wolf intensity (closed form).
      components: ``"pca"`` only: the number of principal components ``k``.
      explained: ``"pca"`` only, instead of ``components``: keep the fewest components that
        explain this share of the features' total variance, in ``(0, 1]``. With neither,
        :data:`DEFAULT_EXPLAINED`.
      on_degenerate: ``"warn"`` (a :class:`DegenerateDensityWarning`) or ``"raise"`` (a
        ``ValueError``) when a class Gaussian is degenerate.

    Raises:
      ValueError: an unknown method, a value out of range, or a field of another method.
    """

    method: Literal["full", "shrinkage", "pca"] = "full"
    shrinkage: float | None = None
    components: int | None = None
    explained: float | None = None
    on_degenerate: Literal["warn", "raise"] = "warn"

    def __post_init__(self) -> None:
        validation.one_of(self, "method", METHODS)
        validation.one_of(self, "on_degenerate", ("warn", "raise"))
        if self.shrinkage is not None:
            if self.method != "shrinkage":
                raise ValueError(
                    f"DensityConfig.shrinkage applies to method='shrinkage', not {self.method!r}"
                )
            validation.non_negative(self, "shrinkage")
            if self.shrinkage > 1:
                raise ValueError(f"DensityConfig.shrinkage must be <= 1, got {self.shrinkage!r}")
        for name in ("components", "explained"):
            if getattr(self, name) is not None and self.method != "pca":
                raise ValueError(
                    f"DensityConfig.{name} applies to method='pca', not {self.method!r}"
                )
        if self.components is not None:
            if self.explained is not None:
                raise ValueError("DensityConfig: give components or explained, not both")
            validation.at_least(self, 1, "components")
        if self.explained is not None:
            validation.probability(self, "explained")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The share of variance a PCA fit keeps when given neither components nor explained. On the
# Fashion-MNIST CNN's 1,568 features 0.9, 0.95, 0.99 and 0.999 keep 10, 19, 105 and 629
# components; at 0.99 (105) each class has 19 samples per dimension (held-out inflation 1.05),
# condition numbers up to 2e5, and the density's own classification of the test features is as
# good as with 128 or 256 components (86%).
DEFAULT_EXPLAINED = 0.99


def class_moments(
    features: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 class means ``[C, D]`` and covariances ``[C, D, D]`` (``X^T X / (n - 1)``)."""
    z = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    d = z.shape[1]
    means = np.zeros((num_classes, d))
    covs = np.zeros((num_classes, d, d))
    for c in range(num_classes):
        zc = z[labels == c]
        if len(zc) < 2:
            raise ValueError(f"class {c} has {len(zc)} training features; need at least 2")
        means[c] = zc.mean(axis=0)
        centred = zc - means[c]
        covs[c] = centred.T @ centred / (len(zc) - 1)
    return means, covs


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """The Ledoit-Wolf intensity ``s`` in ``[0, 1]`` for centred samples ``[n, d]``: the ``s``
    minimising the expected Frobenius error of ``(1 - s) S + s mu I`` (``S = X^T X / n``,
    ``mu = tr S / d``), in closed form (Ledoit & Wolf 2004; scikit-learn's estimator)."""
    x = np.asarray(centred, np.float64)
    n, d = x.shape
    x2 = x * x
    variances = x2.sum(axis=0) / n
    mu = variances.sum() / d
    beta_ = np.sum(np.square(x2.sum(axis=1)))  # sum over samples of |x_i|^4
    delta_ = np.sum(np.square(x.T @ x)) / n**2  # |S|_F^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * variances.sum() + d * mu**2) / d  # |S - mu I|_F^2 / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


@dataclasses.dataclass(frozen=True)
class DensityDiagnostics:
    """What a fit found, per class (tuples indexed by class).

    Attributes:
      method: the fit's method.
      feature_dim: ``D``, the features' dimension.
      dim: the dimension the Gaussians live in (``D``, or ``k`` for PCA).
      jitter: the diagonal jitter the Cholesky factorisations needed (common to all classes).
      samples: training features per class.
      constant_share: share of the Gaussian's coordinates (the features, or the principal
        components) that are (near) constant within the class, before any shrinkage.
      rank: numerical rank of the class covariance the fit factorises (before jitter).
      smallest_eigenvalues: its three smallest eigenvalues (before jitter).
      largest_eigenvalue: its largest eigenvalue.
      condition: its condition number after the jitter (``inf`` when singular).
      shrinkage: the shrinkage intensity of each class (``"shrinkage"`` only).
      explained: the share of the features' total variance the components keep (``"pca"``).
      problems: per class, why it is degenerate (empty when it is not).
    """

    method: str
    feature_dim: int
    dim: int
    jitter: float
    samples: tuple[int, ...]
    constant_share: tuple[float, ...]
    rank: tuple[int, ...]
    smallest_eigenvalues: tuple[tuple[float, ...], ...]
    largest_eigenvalue: tuple[float, ...]
    condition: tuple[float, ...]
    shrinkage: tuple[float, ...] | None = None
    explained: float | None = None
    problems: tuple[tuple[str, ...], ...] = ()

    @property
    def degenerate(self) -> bool:
        return any(self.problems)

    @property
    def degenerate_classes(self) -> tuple[int, ...]:
        return tuple(c for c, p in enumerate(self.problems) if p)

    def describe(self, c: int) -> str:
        """One line of numbers about class ``c``."""
        small = ", ".join(f"{v:.2g}" for v in self.smallest_eigenvalues[c])
        line = (
            f"class {c}: {self.samples[c]} samples for {self.dim} dimensions "
            f"(held-out Mahalanobis x{_fmt(sample_inflation(self.samples[c], self.dim))}), "
            f"{self.constant_share[c]:.0%} of them constant, rank {self.rank[c]}/{self.dim}, "
            f"smallest eigenvalues {small} (largest {self.largest_eigenvalue[c]:.3g}), "
            f"condition {_fmt(self.condition[c])} with jitter {self.jitter:.3g}"
        )
        if self.shrinkage is not None:
            line += f", shrinkage {self.shrinkage[c]:.3f}"
        return line

    def summary(self) -> str:
        """A few lines: the fit, and one line per class."""
        head = f"{self.method} fit: {self.dim}-d Gaussians on {self.feature_dim}-d features"
        if self.explained is not None:
            head += f" ({self.explained:.1%} of the variance)"
        head += f", jitter {self.jitter:.3g}"
        lines = [head]
        for c in range(len(self.samples)):
            flag = f"  <- {'; '.join(self.problems[c])}" if self.problems[c] else ""
            lines.append("  " + self.describe(c) + flag)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (infinite values become ``None``)."""

        def clean(v: Any) -> Any:
            if isinstance(v, tuple | list):
                return [clean(e) for e in v]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        out = {f.name: clean(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out["degenerate"] = self.degenerate
        return out


class DensityFit(NamedTuple):
    """A fitted density and what the fit found."""

    density: GaussianDensity
    diagnostics: DensityDiagnostics


def sample_inflation(n: int, d: int) -> float:
    """``(n - 1) / (n - d - 2)``: the mean inflation of held-out Mahalanobis distances under a
    sample covariance of ``n`` samples in ``d`` dimensions (``inf`` for ``n <= d + 2``)."""
    return (n - 1) / (n - d - 2) if n > d + 2 else math.inf


def _fmt(v: float) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.3g}"


def fit_density(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: DensityConfig | None = None,
) -> DensityFit:
    """Fits one Gaussian per class to ``features [N, D]`` with integer ``labels [N]``, as
    ``config`` says (default: the full fit), and checks what it fitted.

    Warns with a :class:`DegenerateDensityWarning` (or raises, with
    ``config.on_degenerate="raise"``) when a class is degenerate: fewer samples than
    :data:`MAX_SAMPLE_INFLATION` allows for the dimension (full and PCA fits; shrinkage is the
    cure), a numerically singular covariance, or a condition number over
    :data:`MAX_CONDITION`.

    Raises:
      ValueError: on NaN/inf features, a class with fewer than two samples, more principal
        components than dimensions, a class whose features do not vary at all (shrinkage and PCA
        fits: no regularisation helps), or if no jitter up to 1 makes every covariance positive
        definite.
    """
    return _fit(features, labels, num_classes, config)


def fit_gaussians(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: DensityConfig | None = None,
) -> GaussianDensity:
    """Fits one Gaussian per class to ``features [N, D]`` with integer ``labels [N]``: the
    density of :func:`fit_density` (the full fit by default, bitwise as it always was).

    Warns with a :class:`DegenerateDensityWarning` when a class is degenerate.

    Raises:
      ValueError: on NaN/inf features, a class with fewer than two samples, or if no jitter up
        to 1 makes every covariance positive definite (and see :func:`fit_density`).
    """
    return _fit(features, labels, num_classes, config).density


def _fit(features, labels, num_classes, config) -> DensityFit:
    """:func:`fit_density`; called by the public functions alone, so that the warning points
    at their caller."""
    config = DensityConfig() if config is None else config
    if not isinstance(config, DensityConfig):
        raise TypeError(f"config must be a DensityConfig, got {type(config).__name__}")
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or inf")
    labels = np.asarray(labels)
    d = features.shape[1]
    samples = tuple(int(np.sum(labels == c)) for c in range(num_classes))
    if config.method == "full":
        density, diag = _fit_full(features, labels, num_classes, samples)
    elif config.method == "shrinkage":
        density, diag = _fit_shrinkage(features, labels, num_classes, samples, config)
    else:
        density, diag = _fit_pca(features, labels, num_classes, samples, config)
    if diag.degenerate:
        bad = diag.degenerate_classes
        message = (
            f"the {config.method} Gaussian fit on {d}-d features is degenerate in {len(bad)} of "
            f"{num_classes} classes (its log densities are dominated by directions the training "
            "features barely span):\n"
            + "\n".join(f"  {diag.describe(c)} <- {'; '.join(diag.problems[c])}" for c in bad)
            + "\nFit with DensityConfig(method='shrinkage') or DensityConfig(method='pca') "
            "(jaxcf.models.DensityConfig) instead."
        )
        if config.on_degenerate == "raise":
            raise ValueError(message)
        warnings.warn(message, DegenerateDensityWarning, stacklevel=3)
    return DensityFit(density, diag)


def _cholesky(covs: np.ndarray) -> tuple[np.ndarray, float]:
    """Cholesky factors of ``covs + jitter I`` for the smallest jitter of the ladder that makes
    every class positive definite."""
    d = covs.shape[-1]
    for jitter in _JITTERS:
        try:
            chol = np.linalg.cholesky(covs + jitter * np.eye(d))
        except np.linalg.LinAlgError:
            continue
        return chol, float(jitter)
    raise ValueError("no jitter up to 1.0 makes the class covariances positive definite")


def _log_norm(chol: np.ndarray) -> np.ndarray:
    d = chol.shape[-1]
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    return -0.5 * (d * np.log(2.0 * np.pi) + log_det)


def _density(whiten: np.ndarray, means: np.ndarray, log_norm: np.ndarray, jitter: float):
    return GaussianDensity(
        whiten=jnp.asarray(whiten, jnp.float32),
        mean=jnp.asarray(means, jnp.float32),
        log_norm=jnp.asarray(log_norm, jnp.float32),
        jitter=float(jitter),
    )


def _fit_full(features, labels, num_classes, samples):
    means, covs = class_moments(features, labels, num_classes)
    chol, jitter = _cholesky(covs)
    whiten = np.linalg.inv(chol)  # [C, D, D], lower triangular
    density = _density(whiten, means, _log_norm(chol), jitter)
    return density, _diagnose("full", features.shape[1], samples, covs, covs, jitter)


def _fit_shrinkage(features, labels, num_classes, samples, config):
    means, raw = class_moments(features, labels, num_classes)
    z = np.asarray(features, np.float64)
    d = z.shape[1]
    covs = np.empty_like(raw)
    intensities = []
    for c in range(num_classes):
        mu = np.trace(raw[c]) / d
        if mu <= 0:
            raise ValueError(
                f"class {c}: none of its {samples[c]} training features varies, so no shrinkage "
                "gives it a Gaussian (are its features all dead ReLU units?)"
            )
        s = config.shrinkage
        if s is None:
            s = ledoit_wolf_shrinkage(z[labels == c] - means[c])
        intensities.append(float(s))
        covs[c] = (1.0 - s) * raw[c] + s * mu * np.eye(d)
    chol, jitter = _cholesky(covs)
    density = _density(np.linalg.inv(chol), means, _log_norm(chol), jitter)
    diag = _diagnose(
        "shrinkage",
        d,
        samples,
        raw,
        covs,
        jitter,
        shrinkage=tuple(intensities),
        check_samples=False,
    )
    return density, diag


def _fit_pca(features, labels, num_classes, samples, config):
    z = np.asarray(features, np.float64)
    n, d = z.shape
    centre = z.mean(axis=0)
    centred = z - centre
    eigvals, eigvecs = np.linalg.eigh(centred.T @ centred / (n - 1))
    eigvals, eigvecs = np.maximum(eigvals[::-1], 0.0), eigvecs[:, ::-1]  # descending
    total = eigvals.sum()
    if total <= 0:
        raise ValueError("the training features do not vary at all: no principal components")
    if config.components is not None:
        k = config.components
        if k > d:
            raise ValueError(f"DensityConfig.components={k} exceeds the feature dimension {d}")
    else:
        share = DEFAULT_EXPLAINED if config.explained is None else config.explained
        k = min(int(np.searchsorted(np.cumsum(eigvals) / total, share * (1 - 1e-12))) + 1, d)
    proj = eigvecs[:, :k]
    # A deterministic sign: the largest entry of each component is positive.
    proj = proj * np.sign(proj[np.argmax(np.abs(proj), axis=0), np.arange(k)])
    means_k, covs = class_moments(centred @ proj, labels, num_classes)
    for c in range(num_classes):
        if np.trace(covs[c]) <= 0:
            raise ValueError(
                f"class {c}: its {samples[c]} training features do not vary along any of the "
                f"{k} principal components, so no Gaussian can be fitted"
            )
    chol, jitter = _cholesky(covs)
    whiten_k = np.linalg.inv(chol)  # [C, k, k]
    whiten = whiten_k @ proj.T  # [C, k, D]: A_c = L_c^-1 P^T (the rows of [L_c^-1 P^T; 0] kept)
    means = centre + means_k @ proj.T  # mu_c = m + P nu_c
    density = _density(whiten, means, _log_norm(chol), jitter)
    diag = _diagnose(
        "pca", d, samples, covs, covs, jitter, explained=float(eigvals[:k].sum() / total)
    )
    return density, diag


def _diagnose(
    method: str,
    feature_dim: int,
    samples: tuple[int, ...],
    raw: np.ndarray,
    covs: np.ndarray,
    jitter: float,
    *,
    shrinkage: tuple[float, ...] | None = None,
    explained: float | None = None,
    check_samples: bool = True,
) -> DensityDiagnostics:
    """The numbers of :class:`DensityDiagnostics` from the class covariances before (``raw``)
    and after any shrinkage (``covs``, what the fit factorises with ``jitter``)."""
    dim = covs.shape[-1]
    eps = np.finfo(np.float64).eps
    constant, rank, smallest, largest, condition, problems = [], [], [], [], [], []
    for c in range(covs.shape[0]):
        variances = np.diagonal(raw[c])
        constant.append(float(np.mean(variances <= CONSTANT_VARIANCE * variances.mean())))
        eig = np.linalg.eigvalsh(covs[c])  # ascending
        top = max(float(eig[-1]), 0.0)
        rank.append(int(np.sum(eig > top * dim * eps)))  # numpy's matrix_rank tolerance
        smallest.append(tuple(float(v) for v in eig[:3]))
        largest.append(top)
        low = float(eig[0]) + jitter
        condition.append((top + jitter) / low if low > 0 else math.inf)
        found = []
        inflation = sample_inflation(samples[c], dim)
        if check_samples and inflation > MAX_SAMPLE_INFLATION:
            found.append(f"too few samples ({samples[c]} for {dim} dimensions)")
        if rank[-1] < dim:
            found.append(f"singular covariance (rank {rank[-1]} of {dim})")
        elif condition[-1] > MAX_CONDITION:
            found.append(f"ill-conditioned covariance ({_fmt(condition[-1])})")
        problems.append(tuple(found))
    return DensityDiagnostics(
        method=method,
        feature_dim=feature_dim,
        dim=dim,
        jitter=jitter,
        samples=samples,
        constant_share=tuple(constant),
        rank=tuple(rank),
        smallest_eigenvalues=tuple(smallest),
        largest_eigenvalue=tuple(largest),
        condition=tuple(condition),
        shrinkage=shrinkage,
        explained=explained,
        problems=tuple(problems),
    )
