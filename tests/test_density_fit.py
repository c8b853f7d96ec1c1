"""Density fits (full, shrinkage, PCA) on synthetic features of known structure: the degenerate-fit
warning, the regularised fits against hand computations, checkpoint round trips, config checks.
No training."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from jaxcf.models import (
    DegenerateDensityWarning,
    DensityConfig,
    GaussianDensity,
    MLPConfig,
    build,
    checkpoint,
    class_moments,
    config_to_dict,
    fit_density,
    fit_gaussians,
    ledoit_wolf_shrinkage,
    load_classifier,
)
from jaxcf.training import TrainConfig


def _healthy(n_per_class=400, d=6, classes=3, seed=0):
    """Well-separated classes of correlated Gaussians: many samples per dimension."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) + 2 * np.eye(d)
    z = np.concatenate([rng.normal(size=(n_per_class, d)) @ mix + 3 * c for c in range(classes)])
    return z, np.repeat(np.arange(classes), n_per_class)


def _dead_relu(n_per_class=60, d=40, dead=8, classes=3, seed=1):
    """The issue's structure in small: ReLU features, some units dead (always 0), fewer samples
    per class than twice the dimension."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    z = np.maximum(rng.normal(size=(n_per_class * classes, d)) @ mix, 0.0)
    z[:, :dead] = 0.0
    return z, np.arange(n_per_class * classes) % classes


def _direct_log_prob(z, means, covs):
    """float64 log N(z; mu_c, Sigma_c) by slogdet and solve, for every class."""
    d = z.shape[1]
    out = np.zeros((len(z), len(means)))
    for c, (mu, cov) in enumerate(zip(means, covs, strict=True)):
        _, logdet = np.linalg.slogdet(cov)
        diff = z - mu
        maha = np.einsum("bd,bd->b", diff, np.linalg.solve(cov, diff.T).T)
        out[:, c] = -0.5 * (d * np.log(2 * np.pi) + logdet + maha)
    return out


def _old_fit_gaussians(features, labels, num_classes):
    """The full fit as it was before DensityConfig (its arrays must not change)."""
    means, covs = class_moments(features, labels, num_classes)
    d = features.shape[1]
    jitters = (0.0, float(np.finfo(np.float64).eps), *(10.0**e for e in range(-308, 1)))
    for jitter in jitters:
        try:
            chol = np.linalg.cholesky(covs + jitter * np.eye(d))
        except np.linalg.LinAlgError:
            continue
        break
    whiten = np.linalg.inv(chol)
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    log_norm = -0.5 * (d * np.log(2.0 * np.pi) + log_det)
    return {
        "whiten": whiten.astype(np.float32),
        "mean": means.astype(np.float32),
        "log_norm": log_norm.astype(np.float32),
        "jitter": np.asarray(jitter, np.float64),
    }


# ----------------------------------------------------------------------------- the warning


def test_degenerate_full_fit_warns_with_the_numbers():
    z, y = _dead_relu()
    with pytest.warns(DegenerateDensityWarning) as caught:
        density, diag = fit_density(z, y, 3)
    message = str(caught[0].message)
    for words in ("60 samples for 40 dimensions", "20% of them constant", "rank", "condition"):
        assert words in message, message
    assert "jitter" in message and "DensityConfig(method='shrinkage')" in message
    assert diag.degenerate and diag.degenerate_classes == (0, 1, 2)
    assert diag.samples == (60, 60, 60) and diag.dim == 40 and diag.jitter == density.jitter
    assert all(r <= 40 - 8 for r in diag.rank)  # dead units leave the covariance singular
    assert all(np.isclose(s, 0.2) for s in diag.constant_share)
    assert all(p and "too few samples" in p[0] for p in diag.problems)
    json.dumps(diag.to_dict(), allow_nan=False)  # what a checkpoint's metadata records
    with pytest.raises(ValueError, match="degenerate in 3 of 3 classes"):
        fit_density(z, y, 3, DensityConfig(on_degenerate="raise"))


def test_healthy_fit_does_not_warn():
    z, y = _healthy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDensityWarning)
        for config in (
            DensityConfig(),
            DensityConfig(method="shrinkage"),
            DensityConfig(method="pca", components=4),
        ):
            _, diag = fit_density(z, y, 3, config)
            assert not diag.degenerate, diag.summary()
    assert diag.rank == (4, 4, 4) and 0 < diag.explained < 1


def test_collinear_features_are_flagged_even_with_many_samples():
    z, y = _healthy(n_per_class=500, d=5)
    z = np.concatenate([z, z[:, :1] - 2.0 * z[:, 1:2]], axis=1)  # an exact linear combination
    with pytest.warns(DegenerateDensityWarning, match="singular covariance"):
        _, diag = fit_density(z, y, 3)
    assert diag.rank == (5, 5, 5)
    assert not any("too few samples" in p for problems in diag.problems for p in problems)


def test_regularised_fits_cure_the_degenerate_case():
    z, y = _dead_relu(n_per_class=200)
    with pytest.warns(DegenerateDensityWarning):
        fit_density(z, y, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateDensityWarning)
        _, shrunk = fit_density(z, y, 3, DensityConfig(method="shrinkage"))
        _, pca = fit_density(z, y, 3, DensityConfig(method="pca", components=10))
    assert shrunk.rank == (40, 40, 40) and all(0 < s < 1 for s in shrunk.shrinkage)
    assert pca.dim == 10


# ----------------------------------------------------------------------------- the fits


def test_full_fit_is_bitwise_the_previous_one():
    for z, y in (_healthy(), _dead_relu()):
        want = _old_fit_gaussians(z, y, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateDensityWarning)
            got = fit_gaussians(z, y, 3).to_arrays()
            again = fit_gaussians(z, y, 3, DensityConfig()).to_arrays()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
            np.testing.assert_array_equal(again[k], want[k])


def test_ledoit_wolf_intensity_matches_scikit_learn():
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    z, _ = _dead_relu(n_per_class=30)
    centred = z - z.mean(axis=0)
    want = sklearn_covariance.ledoit_wolf_shrinkage(centred, assume_centered=True)
    assert ledoit_wolf_shrinkage(centred) == pytest.approx(want, rel=1e-10)


def test_ledoit_wolf_intensity_by_its_definition():
    """beta / delta with beta the mean squared deviation of the samples' outer products from S
    (over n^2) and delta the distance of S from mu I (Ledoit & Wolf 2004, lemma 3.2)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(25, 4)) @ rng.normal(size=(4, 4))
    x = x - x.mean(axis=0)
    n, d = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / d
    delta = np.sum((s - mu * np.eye(d)) ** 2) / d
    beta = sum(np.sum((np.outer(v, v) - s) ** 2) for v in x) / d / n**2
    assert ledoit_wolf_shrinkage(x) == pytest.approx(min(beta, delta) / delta, rel=1e-10)


@pytest.mark.parametrize("intensity", [None, 0.3])
def test_shrinkage_log_prob_matches_float64(intensity):
    z, y = _dead_relu(n_per_class=80, d=12, dead=2)
    density, diag = fit_density(z, y, 3, DensityConfig(method="shrinkage", shrinkage=intensity))
    means, covs = class_moments(z, y, 3)
    shrunk = np.empty_like(covs)
    for c in range(3):
        s = diag.shrinkage[c]
        if intensity is None:
            assert s == pytest.approx(ledoit_wolf_shrinkage(z[y == c] - means[c]))
        else:
            assert s == intensity
        shrunk[c] = (1 - s) * covs[c] + s * np.trace(covs[c]) / 12 * np.eye(12)
    assert density.jitter == 0.0
    got = np.asarray(density.log_prob(z[:20].astype(np.float32)))
    np.testing.assert_allclose(got, _direct_log_prob(z[:20], means, shrunk), rtol=1e-5, atol=1e-3)


def test_pca_log_prob_equals_a_hand_computation():
    z, y = _dead_relu(n_per_class=150, d=20, dead=3)
    k = 5
    density, diag = fit_density(z, y, 3, DensityConfig(method="pca", components=k))
    # By hand: centre on the mean of all features, project on the k leading eigenvectors of
    # their covariance, fit a Gaussian per class there.
    centre = z.mean(axis=0)
    vals, vecs = np.linalg.eigh(np.cov(z, rowvar=False))
    proj = vecs[:, ::-1][:, :k]
    y_k = (z - centre) @ proj
    means = np.stack([y_k[y == c].mean(axis=0) for c in range(3)])
    covs = np.stack([np.cov(y_k[y == c], rowvar=False) for c in range(3)])
    queries = np.random.default_rng(5).normal(size=(16, 20)) + z[:16]  # off the training data
    want = _direct_log_prob((queries - centre) @ proj, means, covs)  # eigenvector signs cancel
    got = np.asarray(density.log_prob(queries.astype(np.float32)))
    assert got.shape == (16, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    assert density.whiten.shape == (3, k, 20) and density.dim == k and density.feature_dim == 20
    assert diag.explained == pytest.approx(vals[::-1][:k].sum() / vals.sum())
    # Every class scores the same projection: moving a query off the k components changes
    # nothing.
    off = np.linalg.svd(proj.T)[2][k:].T @ np.ones(20 - k)  # orthogonal to every component
    moved = np.asarray(density.log_prob((queries + off).astype(np.float32)))
    np.testing.assert_allclose(moved, got, rtol=1e-5, atol=1e-3)


def test_pca_keeps_the_components_that_explain_the_share():
    z, y = _healthy(d=8)
    vals = np.linalg.eigvalsh(np.cov(z, rowvar=False))[::-1]
    share = np.cumsum(vals) / vals.sum()
    density, diag = fit_density(z, y, 3, DensityConfig(method="pca", explained=0.9))
    assert density.dim == int(np.argmax(share >= 0.9)) + 1
    assert diag.explained >= 0.9
    full, _ = fit_density(z, y, 3, DensityConfig(method="pca", explained=1.0))
    assert full.dim == 8


# ----------------------------------------------------------------------------- save and load


@pytest.mark.parametrize(
    "config",
    [
        DensityConfig(),
        DensityConfig(method="shrinkage"),
        DensityConfig(method="shrinkage", shrinkage=0.5),
        DensityConfig(method="pca", components=3),
    ],
    ids=["full", "ledoit-wolf", "fixed-shrinkage", "pca"],
)
def test_densities_round_trip_through_a_classifier_checkpoint(tmp_path, config):
    """Saved as train_and_evaluate saves them, loaded by load_classifier (whose shapes are those
    of GaussianDensity.abstract_arrays for every fit)."""
    model_config = MLPConfig(input_shape=(6,), num_classes=3, hidden=8)
    model = build(model_config)
    z, y = _dead_relu(n_per_class=100, d=8, dead=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDensityWarning)
        density, _ = fit_density(z, y, 3, config)
    arrays = density.to_arrays()
    abstract = GaussianDensity.abstract_arrays(num_classes=3, feature_dim=8)
    assert {k: (v.shape, v.dtype) for k, v in arrays.items()} == {
        k: (v.shape, v.dtype) for k, v in abstract.items()
    }
    checkpoint.save(
        tmp_path / "ck",
        model,
        metadata={"model": config_to_dict(model_config)},
        extras={"density": arrays},
    )
    _, loaded, _ = load_classifier(tmp_path / "ck")
    assert loaded.whiten.shape == density.whiten.shape and loaded.jitter == density.jitter
    for a, b in zip(
        (density.whiten, density.mean, density.log_norm),
        (loaded.whiten, loaded.mean, loaded.log_norm),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    q = z[:10].astype(np.float32)
    np.testing.assert_array_equal(np.asarray(density.log_prob(q)), np.asarray(loaded.log_prob(q)))


def test_from_arrays_drops_only_rows_that_are_zero_in_every_class():
    rng = np.random.default_rng(0)
    whiten = rng.normal(size=(2, 4, 4)).astype(np.float32)
    arrays = {"mean": np.zeros((2, 4), np.float32), "log_norm": np.zeros(2, np.float32)}
    arrays["jitter"] = np.asarray(0.0)
    padded = whiten.copy()
    padded[:, 2:] = 0.0
    padded[0, 1] = 0.0  # an inner zero row of one class stays
    assert GaussianDensity.from_arrays({**arrays, "whiten": padded}).whiten.shape == (2, 2, 4)
    assert GaussianDensity.from_arrays({**arrays, "whiten": whiten}).whiten.shape == (2, 4, 4)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "lda"}, "method"),
        ({"method": "shrinkage", "shrinkage": 1.5}, "<= 1"),
        ({"method": "shrinkage", "shrinkage": -0.1}, "shrinkage"),
        ({"method": "shrinkage", "shrinkage": float("nan")}, "shrinkage"),
        ({"shrinkage": 0.2}, "applies to method='shrinkage'"),
        ({"method": "shrinkage", "components": 3}, "applies to method='pca'"),
        ({"explained": 0.9}, "applies to method='pca'"),
        ({"method": "pca", "components": 0}, "components"),
        ({"method": "pca", "components": 2.5}, "components"),
        ({"method": "pca", "explained": 0.0}, "explained"),
        ({"method": "pca", "explained": 1.2}, "explained"),
        ({"method": "pca", "components": 3, "explained": 0.9}, "not both"),
        ({"on_degenerate": "ignore"}, "on_degenerate"),
    ],
)
def test_bad_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DensityConfig(**kwargs)


def test_impossible_fits_raise():
    z, y = _healthy(d=4)
    with pytest.raises(ValueError, match="components=5 exceeds the feature dimension 4"):
        fit_density(z, y, 3, DensityConfig(method="pca", components=5))
    dead = z.copy()
    dead[y == 1] = 0.0
    with pytest.raises(ValueError, match="class 1: none of its 400 training features varies"):
        fit_density(dead, y, 3, DensityConfig(method="shrinkage"))
    with pytest.raises(TypeError, match="DensityConfig"):
        fit_density(z, y, 3, {"method": "pca"})
    with pytest.raises(TypeError, match="DensityConfig"):
        TrainConfig(density="pca")


def test_the_density_config_does_not_change_the_training_run():
    """A run interrupted under one density config resumes under another, and a full fit's
    checkpoint metadata keeps its train_config as it was."""
    from jaxcf.training import ClassifierTask

    full = TrainConfig()
    pca = TrainConfig(density=DensityConfig(method="pca"))
    empty = np.zeros((1, 28, 28, 1), np.float32), np.zeros(1)
    assert ClassifierTask(full, *empty).config_dict() == ClassifierTask(pca, *empty).config_dict()
    assert "density" not in ClassifierTask(pca, *empty).config_dict()
