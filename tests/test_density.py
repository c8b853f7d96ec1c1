"""Class-conditional Gaussians: float64 fit, jitter search, log_prob against direct float64."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxcf.models import GaussianDensity, class_moments, fit_gaussians


def _direct_log_prob(z, means, covs):
    """float64 log N(z; mu_c, Sigma_c) by slogdet and solve, for every class."""
    out = np.zeros((len(z), len(means)))
    d = z.shape[1]
    for c, (mu, cov) in enumerate(zip(means, covs, strict=True)):
        _, logdet = np.linalg.slogdet(cov)
        diff = z - mu
        maha = np.einsum("bd,bd->b", diff, np.linalg.solve(cov, diff.T).T)
        out[:, c] = -0.5 * (d * np.log(2 * np.pi) + logdet + maha)
    return out


def test_log_prob_matches_float64(trained, mnist_test):
    """On real features of a trained classifier."""
    model, density, _ = trained
    from jaxcf.data import load_mnist

    train = load_mnist("train")
    feats = np.asarray(model.features(train.images[:6000]), np.float64)
    means, covs = class_moments(feats, train.labels[:6000], 10)
    covs = covs + density.jitter * np.eye(feats.shape[1])
    z = np.asarray(model.features(mnist_test.images[:64]))
    expected = _direct_log_prob(z.astype(np.float64), means, covs)
    got = np.asarray(jax.jit(density.log_prob)(z))
    assert got.shape == (64, 10)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-2)
    # The classifier's own class is usually the most likely under its features.
    pred = np.asarray(model.logits(mnist_test.images[:64])).argmax(-1)
    assert np.mean(got.argmax(-1) == pred) > 0.8


def test_jitter_grows_until_cholesky_succeeds():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 3))
    feats = np.concatenate([base, base[:, :1] * 2.0], axis=1)  # rank-deficient covariance
    labels = np.arange(50) % 2
    density = fit_gaussians(feats, labels, 2)
    assert density.jitter > 0.0
    assert np.all(np.isfinite(np.asarray(density.log_prob(feats.astype(np.float32)))))
    full = fit_gaussians(base, labels, 2)
    assert full.jitter == 0.0


def test_round_trip_and_bad_input():
    rng = np.random.default_rng(1)
    feats, labels = rng.normal(size=(40, 4)), np.arange(40) % 4
    density = fit_gaussians(feats, labels, 4)
    again = GaussianDensity.from_arrays(density.to_arrays())
    z = feats[:5].astype(np.float32)
    np.testing.assert_array_equal(np.asarray(density.log_prob(z)), np.asarray(again.log_prob(z)))
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussians(np.full((10, 2), np.nan), np.arange(10) % 2, 2)
    with pytest.raises(ValueError, match="has 1 training features"):
        fit_gaussians(feats[:3], np.array([0, 1, 2]), 4)
